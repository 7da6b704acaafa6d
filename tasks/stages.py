"""The pipeline's stages as Prefect tasks: each reads inputs by URI, calls one core function, and
commits one write-once artifact keyed by everything that determines it (conventions.md §5).

A stage key hashes: the stage name, `STAGE_CODE_VERSION`, the stage's config, and the content digests
of its inputs. Before computing, a stage looks for a committed, checksum-verified artifact under its
key in the store; if there is one it returns it as *cached* without loading any model. The store is
the source of truth, so caching survives new processes, new machines and new Prefect databases.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.failures import folder_size, is_deterministic_os_error, store_write_error
from tasks.hooks import hook
from tasks.store import Store, digest_json
from trans_encoder_core.runtime import seed_everything

logger = logging.getLogger("trans_encoder.tasks")

STAGE_CODE_VERSION = "1"
FAULT_ENV = "TRANS_ENCODER_FAULT"  # fault injection for resilience tests: "stage:cycle[:kill|:term]"


def stage_key(stage: str, config: dict[str, Any], inputs: dict[str, str]) -> str:
    """The cache key of a stage: 24 hex digits over code version, config and input digests."""
    payload = {"stage": stage, "code": STAGE_CODE_VERSION, "config": config, "inputs": inputs}
    return digest_json(payload)[:24]


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run (plain function call in tests)
        return logger


def injected_fault(stage: str, cycle: int) -> str | None:
    """The fault requested for this stage by `TRANS_ENCODER_FAULT`, if any ("raise", or at the first
    checkpoint "kill" = SIGKILL, "term" = SIGTERM)."""
    spec = os.environ.get(FAULT_ENV, "")
    for item in filter(None, spec.split(",")):
        parts = item.split(":")
        if parts[0] == stage and int(parts[1]) == cycle:
            return parts[2] if len(parts) > 2 else "raise"
    return None


def kill_self() -> None:
    """SIGKILL this process (fault injection: a machine dying mid-stage)."""
    os.kill(os.getpid(), signal.SIGKILL)


def run_stage(
    store: Store,
    stage: str,
    cycle: int,
    config: dict[str, Any],
    inputs: dict[str, str],
    compute: Callable[[Path, str], dict[str, Any]],
    *,
    after_commit: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Return the stage's committed artifact, computing and committing it only if it is missing.

    `compute(folder, key)` writes the output files into `folder` and returns a small metrics dict;
    `after_commit(key)` runs once the artifact is committed (e.g. to drop training checkpoints).
    """
    key = stage_key(stage, config, inputs)
    uri = store.uri("stages", stage, key)
    log = _run_logger()
    started = time.time()
    start = time.perf_counter()
    output: dict[str, int] = {}  # the size of the stage's output once computed (for a full disk)
    try:
        art = store.verify(uri)
        cached = art is not None
        if art is None:
            if injected_fault(stage, cycle) == "raise":
                raise RuntimeError(f"injected failure in stage {stage} of cycle {cycle} ({FAULT_ENV})")
            log.info("stage %s (cycle %d): computing %s", stage, cycle, uri)
            hook("stage-computing", stage, key)  # tests: kill here or hold concurrent runs together
            # Every random draw the stage does not seed itself (e.g. a new classification head) follows
            # from its name, cycle and config, so a recomputation (after a crash, in another process or
            # store) writes the same bytes. Not from the key: input digests can embed the store root.
            seed_everything(int(digest_json({"stage": stage, "cycle": cycle, "config": config})[:15], 16))
            with tempfile.TemporaryDirectory(prefix=f"te-{stage}-") as tmp:
                metrics = compute(Path(tmp), key)
                output["bytes"] = folder_size(Path(tmp))
                meta = {
                    "stage": stage,
                    "cycle": cycle,
                    "config": config,
                    "inputs": inputs,
                    "metrics": metrics,
                    "code_version": STAGE_CODE_VERSION,
                }
                art = store.commit_dir(Path(tmp), uri, meta)
            if after_commit is not None:
                after_commit(key)
        else:
            log.info("stage %s (cycle %d): cached at %s", stage, cycle, uri)
    except OSError as exc:
        if not is_deterministic_os_error(exc):
            raise
        raise store_write_error(exc, store=store, stage=stage, needed=output.get("bytes")) from exc
    return {
        "name": stage,
        "cycle": cycle,
        "uri": art.uri,
        "digest": art.digest,
        "cached": cached,
        "seconds": round(time.perf_counter() - start, 3),
        "started": round(started, 3),
        "finished": round(time.time(), 3),
        "metrics": art.meta.get("metrics", {}),
    }


def pipeline_task(fn: Callable[..., dict[str, Any]]) -> Any:
    """Wrap a stage function as a Prefect task: no Prefect-side cache (the store is the cache),
    retries for transient storage errors, and a readable run name."""
    return task(
        fn,
        name=fn.__name__,
        cache_policy=NO_CACHE,
        persist_result=False,
        retries=2,
        retry_delay_seconds=[2, 10],
        retry_condition_fn=_retry_transient,
        task_run_name=f"{fn.__name__}[cycle {{cycle}}]"
        if "cycle" in fn.__code__.co_varnames
        else fn.__name__,
    )


# Connection failures of the object-store clients that are not OSError subclasses (botocore's
# EndpointConnectionError and ConnectionClosedError, aiohttp's ServerDisconnectedError, ...).
_TRANSIENT_CLASS_NAMES = frozenset(
    {"ConnectionError", "HTTPClientError", "ClientConnectionError", "ClientPayloadError", "TimeoutError"}
)


def is_transient(exc: BaseException) -> bool:
    """Whether an error is a storage or network hiccup worth retrying.

    Bad input and bad configuration raise `TransEncoderError`s that are `ValueError`s, so they are
    never retried, nor are OS errors that fail the same way every time (`tasks.failures`: ENOSPC,
    ENOTDIR, EACCES, EROFS, EISDIR, ...); a missing file is retried because a concurrent run of the
    same stage may be replacing it (a user's pair file or model folder that does not exist is an
    input error instead).
    """
    if isinstance(exc, PermissionError) or is_deterministic_os_error(exc):
        return False  # a full disk, a path through a file, a read-only store: the same on every try
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return True
    return any(
        cls.__name__ in _TRANSIENT_CLASS_NAMES and cls.__module__.split(".")[0] in ("botocore", "aiohttp")
        for cls in type(exc).__mro__
    )


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O errors (storage hiccups), never bad input or injected failures."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001
        return is_transient(exc)
    return False
