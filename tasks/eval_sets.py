"""The run's own evaluation sets: a labelled dev file, named test files, a binary task's dev and test.

Each set travels to the stages as a small JSON-able reference (never a pickled object): where it is,
how to read it, its metric and its content digest (which keys the stages that use it). Files are
read and checked once when the run starts (`eval_inputs`), so a bad label fails the run before any
stage writes; a worker reloads a set from its reference (`load_eval_set`) and checks the digest.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import fsspec
from prefect import task
from prefect.cache_policies import NO_CACHE

from trans_encoder_core.binary_tasks import BINARY_DATA_ENV_VAR, load_binary_task
from trans_encoder_core.errors import ConfigError, InputDataError
from trans_encoder_core.eval_sets import EvalFile, EvalSet, read_eval_set

Ref = dict[str, Any]
DEV = "dev"  # the name of the run's own dev set in evaluation results


def read_eval_bytes(uri: str, role: str) -> bytes:
    """The bytes of a labelled file (path or fsspec URL), with a clear error when it is not there."""
    try:
        with fsspec.open(uri, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise InputDataError(
            f"{role.capitalize()} file {uri} does not exist; check the path or URL given as {role}.",
            source=uri,
        ) from exc
    except IsADirectoryError as exc:
        raise InputDataError(f"{role.capitalize()} file {uri} is a folder; pass a file.", source=uri) from exc


def _read_file(spec: EvalFile, name: str, role: str) -> EvalSet:
    data = read_eval_bytes(spec.uri, role)
    return read_eval_set(spec, name=name, source=io.BytesIO(data))


def file_ref(spec: EvalFile, name: str, role: str) -> Ref:
    """Read and check a labelled file once; its reference for the stages."""
    data = _read_file(spec, name, role)
    return {
        "kind": "file",
        "name": name,
        "spec": spec.model_dump(),
        "metric": data.metric,
        "digest": data.digest,
        "n": len(data),
        "source": spec.uri,
    }


def binary_refs(root: str | None, task: str) -> tuple[Ref, Ref]:
    """The dev and test set references of a binary task read from `root` (ROC-AUC × 100)."""
    if root is None or not Path(root).is_dir():
        where = f"folder {root!r} not found" if root else f"${BINARY_DATA_ENV_VAR} not set"
        raise ConfigError(
            f"A {task} run expects the binary task folder (with {task}/ in it), got {where}; pass "
            f"binary_data=DIR (--set binary_data=DIR) or set {BINARY_DATA_ENV_VAR}."
        )
    splits = load_binary_task(root, task)
    refs = []
    for split, data in (("dev", splits.dev), ("test", splits.test)):
        ref = {"kind": "binary", "task": task, "split": split, "root": str(Path(root).resolve())}
        ref |= {"name": DEV if split == "dev" else task, "metric": data.metric, "digest": data.digest}
        refs.append(ref | {"n": len(data), "source": data.source})
    return refs[0], refs[1]


@task(cache_policy=NO_CACHE, persist_result=False)
def eval_inputs(
    dev: EvalFile | None, tests: dict[str, EvalFile], binary: tuple[str | None, str] | None = None
) -> dict[str, Any]:
    """The run's own sets: `{"dev": ref or None, "tests": {name: ref}}`; a dev file wins over a binary
    task's dev set, and a binary task's test set comes first among the tests."""
    dev_ref, test_refs = None, {}
    if binary is not None:
        dev_ref, test_ref = binary_refs(*binary)
        test_refs[test_ref["name"]] = test_ref
    if dev is not None:
        dev_ref = file_ref(dev, DEV, "dev")
    test_refs |= {name: file_ref(spec, name, f"test set {name!r}") for name, spec in tests.items()}
    return {"dev": dev_ref, "tests": test_refs}


def load_eval_set(ref: Ref) -> EvalSet:
    """A set from its reference, in the worker; a file whose content changed since the run started is
    an error (its digest keys the stage)."""
    if ref["kind"] == "binary":
        splits = load_binary_task(ref["root"], ref["task"])
        data = splits.dev if ref["split"] == "dev" else splits.test
    else:
        data = _read_file(EvalFile(**ref["spec"]), ref["name"], ref["name"])
    if data.digest != ref["digest"]:
        raise InputDataError(
            f"Evaluation set {ref['source']} changed while the run was using it (digest {data.digest[:12]}, "
            f"expected {ref['digest'][:12]}); rerun to use its new content.",
            source=str(ref["source"]),
        )
    return data
