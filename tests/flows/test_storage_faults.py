"""Storage faults: an S3 endpoint that dies during a commit, and cached outputs corrupted at rest.

- A proxy in front of the moto server cuts the upload of a `train_bi` model file after its first
  16 KiB, with the rest of the body still to send, and stops moto for a second: the upload fails with
  a connection error (client-side retries are off, so it reaches the task), Prefect retries the task
  (tasks/stages.py), the retry sets the partial folder aside (it has no commit marker, so it was never
  taken as finished) and commits a complete copy; the run completes.
- A truncated Parquet table and altered model weights, on S3 and on a local store, fail their recorded
  sha256 at the next run: exactly those stages are recomputed (bit for bit, so everything after them
  stays cached) and the scores are unchanged.
- A download whose bytes no longer match the commit is refused (and retried), never cached.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import s3fs

from flows.distill import distill
from tasks.store import COMMIT_FILE, STORAGE_OPTIONS_ENV, Store, StoreIntegrityError
from tests.flows.conftest import only_model, stage_runs
from tests.flows.test_s3_store import tiny_config
from tests.s3 import CuttingProxy, MotoS3, moto_s3  # noqa: F401

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _stage(summary: dict[str, Any], name: str, cycle: int = 1) -> dict[str, Any]:
    return next(s for s in summary["stages"] if s["name"] == name and s["cycle"] == cycle)


def _best(summary: dict[str, Any]) -> dict[str, Any]:
    return {kind: (e["cycle"], e["dev"], e["test"]) for kind, e in only_model(summary)["best"].items()}


def _damage(store: Store, uri: str, how: str) -> None:
    """Truncate a file, or alter bytes in its middle keeping its size (a silent bit flip)."""
    data = store.read_bytes(uri)
    if how == "truncate":
        damaged = data[: len(data) // 2]
    else:
        middle = len(data) // 2
        damaged = data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]
    store.write_bytes(uri, damaged)


@dataclass
class OutageRun:
    config: Any
    summary: dict[str, Any]
    cut: dict[str, Any]
    victim: str
    seconds: float


CUT_AFTER = 16 * 1024  # body bytes of the model upload that get through before the endpoint dies


@pytest.fixture(scope="module")
def outage_run(
    moto_s3: MotoS3,  # noqa: F811
    flow_model: Path,
    tiny_sts: Path,
    torch_single_thread: None,
) -> Iterator[OutageRun]:
    proxy = CuttingProxy(moto_s3, rb"PUT /[^ ]*/stages/train_bi/[^ /]+/model\.safetensors ", CUT_AFTER)
    start = time.perf_counter()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TRANS_ENCODER_S3_ENDPOINT", proxy.endpoint)  # every request goes through it
            # No client-side retries: s3fs's own (5 tries, about 1 s of backoff) and botocore's could
            # outlast the 1 s outage and resend the file, so whether Prefect's retry ran depended on
            # timing (CI once saw no retry). Here the failure always reaches the task.
            mp.setattr(s3fs.S3FileSystem, "retries", 1)
            mp.setenv(
                STORAGE_OPTIONS_ENV,
                json.dumps({"s3": {"config_kwargs": {"retries": {"total_max_attempts": 1}}}}),
            )
            cfg = tiny_config(moto_s3.url("outage"), flow_model, tiny_sts, run_name="outage")
            summary = distill(cfg)
    finally:
        proxy.close()
    while moto_s3.server is None:  # the restart timer may still be pending
        time.sleep(0.1)
    victim = _stage(summary, "train_bi")["uri"]
    yield OutageRun(cfg, summary, proxy.cut, victim, time.perf_counter() - start)


def test_endpoint_outage_during_an_upload_is_retried_and_the_run_completes(
    outage_run: OutageRun,
    moto_s3: MotoS3,  # noqa: F811
) -> None:
    summary, victim, cut = outage_run.summary, outage_run.victim, outage_run.cut
    key = victim.rsplit("/", 1)[1]
    assert f"/stages/train_bi/{key}/model.safetensors" in cut["request"], cut
    assert cut["sent"] == CUT_AFTER < cut["length"], f"the upload was not in flight when cut: {cut}"
    assert not _stage(summary, "train_bi")["cached"]
    store = Store(outage_run.config.store)
    for stage in summary["stages"]:
        assert store.verify(stage["uri"]) is not None
    objects = moto_s3.objects("outage/stages/train_bi/")
    aside = {k.rsplit("/", 1)[1] for k in objects if f"/.{key}.invalid-" in k}
    assert aside, "the partial upload (its folder without a marker) is set aside by the retry"
    assert COMMIT_FILE not in aside and "model.safetensors" not in aside, aside
    assert f"outage/stages/train_bi/{key}/{COMMIT_FILE}" in objects
    assert outage_run.seconds < 120, f"the outage cost {outage_run.seconds:.0f} s: client retries too slow"


def test_corrupted_parquet_and_weights_on_s3_are_recomputed(outage_run: OutageRun) -> None:
    cfg, first = outage_run.config, outage_run.summary
    store = Store(cfg.store)
    _damage(store, _stage(first, "bi_scores")["uri"] + "/labels.parquet", "truncate")
    _damage(store, _stage(first, "train_cross")["uri"] + "/model.safetensors", "alter")
    second = distill(cfg)
    runs = stage_runs(second)
    assert not runs[("bi_scores", 1)] and not runs[("train_cross", 1)]
    recomputed = {key for key, cached in runs.items() if not cached}
    assert recomputed == {("bi_scores", 1), ("train_cross", 1)}, "a recomputed stage wrote other bytes"
    assert _best(second) == _best(first)
    assert [s["uri"] for s in second["stages"]] == [s["uri"] for s in first["stages"]]


def test_altered_weights_on_a_local_store_are_recomputed(
    tmp_path: Path, flow_model: Path, tiny_sts: Path
) -> None:
    cfg = tiny_config(str(tmp_path / "store"), flow_model, tiny_sts, run_name="local")
    first = distill(cfg)
    store = Store(cfg.store)
    weights = _stage(first, "train_bi")["uri"] + "/model.safetensors"
    size = len(store.read_bytes(weights))
    _damage(store, weights, "alter")
    assert len(store.read_bytes(weights)) == size and store.verify(_stage(first, "train_bi")["uri"]) is None
    second = distill(cfg)
    assert {k for k, cached in stage_runs(second).items() if not cached} == {("train_bi", 1)}
    assert _best(second) == _best(first)
    assert store.verify(_stage(second, "train_bi")["uri"]) is not None
    assert [p for p in (tmp_path / "store" / "stages" / "train_bi").iterdir() if ".invalid-" in p.name]


def test_a_download_that_does_not_match_its_commit_is_refused(
    tmp_path: Path,
    moto_s3: MotoS3,  # noqa: F811
) -> None:
    store = Store(moto_s3.url("download"))
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"0123456789" * 100)
    uri = store.uri("stages", "train_bi", "k1")
    store.commit_dir(folder, uri, {})
    _damage(store, uri + "/model.safetensors", "alter")  # same size: the shallow check passes
    with pytest.raises(StoreIntegrityError, match="does not match its checksum"):
        store.local_copy(uri)
    assert isinstance(StoreIntegrityError("x"), OSError), "an integrity error is retried like an I/O error"


def test_connection_failures_are_retried_and_bad_input_is_not() -> None:
    from botocore.exceptions import (
        ConnectionClosedError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    from tasks.stages import is_transient
    from trans_encoder_core.errors import ConfigError, InputDataError, ModelLoadError

    aiohttp = pytest.importorskip("aiohttp")
    transient = [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        aiohttp.ServerDisconnectedError(),
        ConnectionResetError(),
        TimeoutError(),
        FileNotFoundError("replaced by a concurrent run"),
        StoreIntegrityError("torn download"),
    ]
    permanent = [
        NoCredentialsError(),
        PermissionError("access denied"),
        InputDataError("bad row"),
        ConfigError("bad value"),
        ModelLoadError("no tokenizer"),
        RuntimeError("injected failure"),
    ]
    assert [type(e).__name__ for e in transient if not is_transient(e)] == []
    assert [type(e).__name__ for e in permanent if is_transient(e)] == []
