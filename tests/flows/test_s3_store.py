"""The whole self-distillation flow on an `s3://` store (moto's server on 127.0.0.1, a tiny model).

The first run computes every stage and commits it to the bucket; a second run is fully cached and
loads no model. Every stored object is a safe file type, and the S3 secret key set in the environment
appears in no stored object, no summary and no log line (even with botocore and s3fs at DEBUG).
"""

from __future__ import annotations

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
    data_root: Path,
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
        cfg = tiny_config(moto_s3.url("flow"), flow_model, data_root, run_name="s3-run")
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
