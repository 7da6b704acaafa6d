"""The run's external inputs, each resolved once: models and the benchmark folder, with the content
digests that key the stages using them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import data_digest, model_input
from tasks.store import Store
from trans_encoder_core.benchmarks import DATA_ENV_VAR, LabelledPairs, available_tasks, load_stsb
from trans_encoder_core.runtime import legacy_precision, resolve_precision

STSB_DEV_FILE = "stsb/sts-dev.csv"


def benchmark_root(explicit: str | None) -> str | None:
    """The benchmark folder a run reads: the configured one, else $TRANS_ENCODER_DATA, else None."""
    return explicit or os.environ.get(DATA_ENV_VAR) or None


@task(cache_policy=NO_CACHE, persist_result=False)
def fingerprint_model(store_root: str, ref: str) -> dict[str, str]:
    """A model reference with the content digest that keys the stages using it."""
    return model_input(Store(store_root), ref)


@task(cache_policy=NO_CACHE, persist_result=False)
def benchmark_inputs(root: str | None, tasks: list[str], stsb_dev: bool = True) -> dict[str, Any]:
    """Benchmark folder facts: its digest for evaluation, and the STS-B dev fingerprint for selection.

    With `stsb_dev` False (the run brings its own dev set) STS-B dev is neither fingerprinted nor
    read: the evaluation digest leaves `stsb/sts-dev.csv` out and there is no STS-B dev input. With
    no tasks either (a binary task's run) the folder is not an input at all, set or not.
    """
    if not tasks and not stsb_dev:  # nothing is read from the folder, so it keys nothing either
        return {"data": None, "dev": None, "missing": {}}
    if root is None or not Path(root).is_dir():
        return {
            "data": None,
            "dev": None,
            "reason": f"benchmark folder {root!r} not found" if root else "not set",
        }
    availability = available_tasks(root)
    present = [t for t in tasks if availability.get(t) is None]
    skip = () if stsb_dev else (STSB_DEV_FILE,)
    data = {"data": str(Path(root).resolve()), "digest": data_digest(root, present, skip=skip)}
    dev = None
    if stsb_dev and availability.get("stsb") is None:
        dev = {"data": data["data"], "digest": data_digest(root, ["stsb"])}
    return {"data": data, "dev": dev, "missing": {t: r for t, r in availability.items() if r and t in tasks}}


def dev_set(dev: dict[str, Any] | None) -> LabelledPairs | None:
    """The selection set a training stage evaluates on: STS-B dev, the run's own dev set (a reference
    with a "kind", `tasks.eval_sets`), or None without selection."""
    if not dev:
        return None
    if "kind" in dev:
        from tasks.eval_sets import load_eval_set

        return load_eval_set(dev)
    return load_stsb(dev["data"], "dev")


CPU_BF16_ENV = "TRANS_ENCODER_CPU_BF16"  # "0": precision "auto" stays fp32 on a CPU with native bf16


def stage_precision(requested: str, device: Any) -> tuple[str, str | None]:
    """The precision a training stage runs at, and what its key must add for it.

    "auto" is bf16 autocast on a GPU with bf16 and, since native CPU bf16 is used, on a CPU with
    AVX512-BF16/AMX (set TRANS_ENCODER_CPU_BF16=0 to keep such a CPU at fp32). The key gains
    `precision` only where this differs from the rule before that change, so earlier keys stay valid
    exactly where the computation is the same.
    """
    resolved = _resolve(requested, device)
    return resolved, (None if resolved == legacy_precision(requested, device) else resolved)


def _resolve(requested: str, device: Any) -> str:
    """`requested` resolved on `device`, honouring TRANS_ENCODER_CPU_BF16=0."""
    native = None if os.environ.get(CPU_BF16_ENV, "") != "0" else False
    return resolve_precision(requested, device, native_cpu_bf16=native)


def score_precision(requested: str, device: Any) -> tuple[str, str | None]:
    """The precision a labelling or evaluation stage scores at, and what its key must add for it:
    nothing when that is fp32 (what every scoring stage computed before the option existed)."""
    resolved = _resolve(requested, device)
    return resolved, (None if resolved == "fp32" else resolved)
