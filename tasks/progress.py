"""Progress of long training stages: a Prefect progress artifact (a bar in the UI) and log lines.

`training_progress(stage, cycle)` returns the callback that `trans_encoder_core.training.fit` calls
after every optimiser step. It reports at most every `every_percent` percent and never fails a fit: a
reporting error is logged once and reporting stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("trans_encoder.tasks")


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run (plain function call in tests)
        return logger


def _in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


class ProgressReporter:
    """Report `{"step", "total", "loss"}` updates of one fit as a progress artifact and log lines."""

    def __init__(self, stage: str, cycle: int, *, every_percent: float = 10.0) -> None:
        self.label = f"{stage} (cycle {cycle})"
        self.every = every_percent
        self.last = -every_percent
        self.artifact_id: Any = None
        self.enabled = True
        self.start = time.perf_counter()
        self.log = _run_logger()
        self.in_run = _in_run()

    def __call__(self, update: dict[str, float]) -> None:
        if not self.enabled:
            return
        total = max(int(update["total"]), 1)
        percent = 100.0 * update["step"] / total
        if percent - self.last < self.every and update["step"] < total:
            return
        self.last = percent
        try:
            self._report(percent, update, total)
        except Exception as exc:  # noqa: BLE001 - progress must never fail a training run
            self.enabled = False
            self.log.warning("progress reporting of %s stopped: %s", self.label, exc)

    def _report(self, percent: float, update: dict[str, float], total: int) -> None:
        elapsed = time.perf_counter() - self.start
        text = f"{self.label}: step {int(update['step'])}/{total}, loss {update['loss']:.4f}, {elapsed:.0f} s"
        self.log.info("%s (%.0f%%)", text, percent)
        if not self.in_run:
            return
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(percent, description=f"training {text}")
        else:
            update_progress_artifact(self.artifact_id, percent, description=f"training {text}")


def training_progress(stage: str, cycle: int) -> Callable[[dict[str, float]], None]:
    """The progress callback of one training stage (see `ProgressReporter`)."""
    return ProgressReporter(stage, cycle)
