"""Checkpointed training inside a stage, one helper for every training stage (init_bi, train_cross,
train_bi): the fit checkpoints into the store, resumes from there after a crash, reports progress,
and the checkpoints are dropped once the stage's artifact is committed (conventions.md §5)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from tasks.artifacts import load_checkpoint, save_checkpoint
from tasks.progress import training_progress
from tasks.stages import injected_fault, kill_self
from tasks.store import Store
from trans_encoder_core.training import TrainResult, TrainState


def checkpoint_uri(store: Store, stage: str, key: str) -> str:
    return store.uri("checkpoints", stage, key, "state.safetensors")


def checkpointed_fit(store: Store, stage: str, key: str, cycle: int) -> dict[str, Any]:
    """Keyword arguments of `trans_encoder_core.training.fit` (through the distillation and init
    functions) that checkpoint into the store, resume from its last checkpoint and report progress."""
    uri = checkpoint_uri(store, stage, key)
    fault = injected_fault(stage, cycle)

    def checkpoint(state: TrainState) -> None:
        nonlocal fault
        save_checkpoint(store, uri, state)
        if fault == "kill":
            kill_self()
        elif fault == "term":
            fault = None  # once: a user stopping the run; training goes on here until it sees the stop
            os.kill(os.getpid(), signal.SIGTERM)

    return {
        "checkpoint": checkpoint,
        "resume": load_checkpoint(store, uri),
        "progress": training_progress(stage, cycle),
    }


def drop_checkpoints(store: Store, stage: str) -> Callable[[str], None]:
    """The `after_commit` hook of a training stage: delete its checkpoints."""
    return lambda key: store.delete(store.uri("checkpoints", stage, key))


def resumed_step(fit_kwargs: dict[str, Any]) -> int | None:
    """The step the fit resumes from (None: from scratch); read it before the fit, which may reuse the
    resumed state as its own."""
    resume = fit_kwargs.get("resume")
    return resume.global_step if resume is not None else None


def fit_summary(result: TrainResult, resumed_from: int | None) -> dict[str, Any]:
    """The metrics a training stage reports: dev score, steps, time, precision, losses, dev curve."""
    return {
        "resumed_from_step": resumed_from,
        "dev": result.best_score,
        "best_step": result.best_step,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 2),
        "precision": result.precision,
        "loss_first": result.losses[0] if result.losses else None,
        "loss_last": result.losses[-1] if result.losses else None,
        "history": [[p.global_step, round(p.score, 4)] for p in result.history],
    }
