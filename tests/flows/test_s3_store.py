"""The whole self-distillation flow on an `s3://` store (moto's server on 127.0.0.1, a tiny model).

The first run computes every stage and commits it to the bucket; a second run is fully cached and
loads no model. Every stored object is a safe file type, and the S3 secret key set in the environment
appears in no stored object, no summary and no log line (even with botocore and s3fs at DEBUG).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.config import single_plm_config
from flows.distill import distill
from tasks.store import COMMIT_FILE, Store
from tests.flows.conftest import EXAMPLE_PAIRS, only_model
from tests.flows.test_crash_safety import (
    Kill,
    Reference,
    killed_where,
    reference,  # noqa: F401 - the shared uninterrupted run (a session fixture)
    run_cli,
    scores,
    subprocess_env,
    tiny_cli_args,
)
from tests.s3 import MotoS3, download_cache, moto_s3  # noqa: F401
from tests.test_security import unsafe_artifact_files
from trans_encoder_core import encoders
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig, bi_fit_defaults, cross_fit_defaults

DEBUG_LOGGERS = ("botocore", "aiobotocore", "s3fs", "fsspec", "urllib3", "tasks", "trans_encoder")


def tiny_config(store: str, model: Path, data: Path | None, **overrides: Any) -> Any:
    """One cycle of a tiny model on the example pairs, evaluated on STS-B (seconds on one core)."""
    values: dict[str, Any] = {
        "store": store,
        "pairs": str(EXAMPLE_PAIRS),
        "data": str(data) if data else None,
        "eval_tasks": ["stsb"],
        "cycles": 1,
        "checkpoint_steps": 2,
        "device": "cpu",
        "bi": BiEncoderConfig(model=str(model), fit=bi_fit_defaults(epochs=2, batch_size=8)),
        "cross": CrossEncoderConfig(max_length=32, eval_max_length=32, fit=cross_fit_defaults(batch_size=8)),
    }
    return single_plm_config(**{**values, **overrides})


class Capture(logging.Handler):
    """Keeps every formatted log record (message, arguments and traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(logging.Formatter().format(record))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is kept raw
            self.lines.append(repr(record.__dict__))


@dataclass
class S3Runs:
    s3: MotoS3
    config: Any
    first: dict[str, Any]
    second: dict[str, Any]
    logs: list[str]


@pytest.fixture(scope="module")
def s3_runs(
    moto_s3: MotoS3,  # noqa: F811
    flow_model: Path,
    tiny_sts: Path,
    torch_single_thread: None,
) -> Iterator[S3Runs]:
    capture = Capture()
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    levels = {name: logging.getLogger(name).level for name in DEBUG_LOGGERS}
    for logger in loggers:
        logger.addHandler(capture)
    for name in DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        cfg = tiny_config(moto_s3.url("flow"), flow_model, tiny_sts, run_name="s3-run")
        first = distill(cfg)
        with pytest.MonkeyPatch.context() as mp:

            def refuse(*args: Any, **kwargs: Any) -> None:
                raise AssertionError("a cached run must not load a model")

            mp.setattr(encoders.BiEncoder, "from_pretrained", classmethod(refuse))
            mp.setattr(encoders.CrossEncoder, "from_pretrained", classmethod(refuse))
            second = distill(cfg)
    finally:
        for logger in loggers:
            logger.removeHandler(capture)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    yield S3Runs(moto_s3, cfg, first, second, capture.lines)


def test_flow_on_s3_commits_every_stage_then_is_fully_cached(s3_runs: S3Runs) -> None:
    first, second = s3_runs.first, s3_runs.second
    assert not any(s["cached"] for s in first["stages"])
    assert all(s["cached"] for s in second["stages"]) and second["all_cached"]
    assert (
        only_model(second)["best"] == only_model(first)["best"]
        and "stsb" in only_model(first)["best"]["bi"]["test"]
    )
    store = Store(s3_runs.config.store)
    for stage in first["stages"]:
        assert stage["uri"].startswith("s3://") and store.verify(stage["uri"]) is not None
    assert store.read_json(second["summary_uri"])["all_cached"] is True
    objects = s3_runs.s3.objects("flow/")
    markers = {key.rsplit("/", 1)[0] for key in objects if key.endswith(COMMIT_FILE)}
    assert len(markers) == len({s["uri"] for s in first["stages"]}), "one committed folder per stage key"
    assert not [key for key in objects if ".tmp-" in key or ".invalid-" in key]


def test_s3_artifacts_hold_only_safe_file_types(s3_runs: S3Runs) -> None:
    keys = [key for key in s3_runs.s3.objects("flow/stages/")]
    assert keys and unsafe_artifact_files(keys) == []


def test_s3_secret_key_never_reaches_objects_summary_or_logs(s3_runs: S3Runs) -> None:
    secret = s3_runs.s3.secret
    assert len(s3_runs.logs) > 100, "the log capture saw too little to be meaningful"
    assert not [line for line in s3_runs.logs if secret in line]
    objects = s3_runs.s3.objects("")
    assert any(key.endswith("summary.json") for key in objects)
    assert not [key for key, data in objects.items() if secret.encode() in data]
    for summary in (s3_runs.first, s3_runs.second):
        assert secret not in repr(summary)
    downloaded = [p for p in download_cache().rglob("*") if p.is_file()]
    assert downloaded and not [p for p in downloaded if secret.encode() in p.read_bytes()]


# -- SIGKILL inside S3 commits (files first, marker last: no atomic rename) -------------------------
S3_KILLS = [
    Kill("commit-partial", "ingest_pairs"),
    Kill("commit-partial", "train_cross"),  # part of the model folder uploaded
    Kill("commit-marked", "train_cross"),  # the marker is up (on S3 that is the commit)
    Kill("commit-unmarked", "train_bi"),
]


def s3_folders(s3: MotoS3, prefix: str) -> dict[str, dict[str, bytes]]:
    """Every `stage/name` folder under `{prefix}/stages/` with its objects (name may be hidden)."""
    folders: dict[str, dict[str, bytes]] = {}
    for key, data in s3.objects(f"{prefix}/stages/").items():
        stage, name, rel = key[len(prefix) + len("/stages/") :].split("/", 2)
        folders.setdefault(f"{stage}/{name}", {})[rel] = data
    return folders


def assert_no_partial_is_taken(s3: MotoS3, prefix: str) -> set[str]:
    """Every folder with a marker holds every file it lists, matching; every folder without one is
    refused by `Store.verify`. Returns the visible folders without a marker (partial uploads)."""
    store = Store(s3.url(prefix))
    partial = set()
    for folder, files in s3_folders(s3, prefix).items():
        if COMMIT_FILE in files:
            for rel, rec in json.loads(files[COMMIT_FILE])["files"].items():
                assert rel in files, f"{folder}: the marker vouches for {rel}, which is not uploaded"
                assert hashlib.sha256(files[rel]).hexdigest() == rec["sha256"], f"{folder}/{rel} differs"
        elif not folder.split("/")[1].startswith("."):
            assert store.verify(store.uri("stages", *folder.split("/"))) is None
            partial.add(folder)
    return partial


def test_sigkill_inside_s3_commits_never_exposes_partial_outputs(
    moto_s3: MotoS3,  # noqa: F811
    reference: Reference,  # noqa: F811
    flow_model: Path,
    tiny_sts: Path,
    tmp_path: Path,
) -> None:
    prefix = "crash"
    summary_path = tmp_path / "summary.json"
    args = tiny_cli_args(moto_s3.url(prefix), flow_model, tiny_sts, summary=summary_path)
    for i, kill in enumerate(S3_KILLS):
        run = run_cli(args, subprocess_env(tmp_path / f"home-{i}", **kill.env()))
        path = killed_where(run, kill)
        partial = assert_no_partial_is_taken(moto_s3, prefix)
        if kill.point == "commit-marked":
            store = Store(moto_s3.url(prefix))
            assert path not in partial and store.verify(f"{store.root}/stages/{path}") is not None
        else:
            assert path in partial, f"the kill at {kill} left no partial upload of {path}"
    final = run_cli(args, subprocess_env(tmp_path / "home-final"))
    assert final.returncode == 0, final.output[-4000:]
    assert assert_no_partial_is_taken(moto_s3, prefix) == set(), "a partial upload is still visible"
    summary = json.loads(summary_path.read_text())
    assert scores(summary) == scores(reference.summary)
    aside = [f for f in s3_folders(moto_s3, prefix) if ".invalid-" in f]
    assert len(aside) == 3, f"each partial upload is set aside once, never used: {aside}"
