"""Stages of a Trans-Encoder cycle (algorithm.md §1.4): bi_scores → train_cross → cross_scores →
train_bi, plus `evaluate`. Each is a thin wrapper over one core function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tasks.artifacts import (
    LABELS_FILE,
    PAIRS_FILE,
    RESULTS_FILE,
    load_bi,
    load_checkpoint,
    load_cross,
    read_table,
    save_checkpoint,
    write_table,
)
from tasks.progress import training_progress
from tasks.stages import injected_fault, kill_self, pipeline_task, run_stage
from tasks.store import Store
from trans_encoder_core.benchmarks import available_tasks, load_stsb, load_task
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig
from trans_encoder_core.distillation import quantile_calibrate, train_bi_encoder, train_cross_encoder
from trans_encoder_core.evaluation import bi_scorer, cross_scorer, dev_evaluator, evaluate_scorer
from trans_encoder_core.metrics import mean_over_present
from trans_encoder_core.runtime import resolve_device
from trans_encoder_core.schema import labels_table
from trans_encoder_core.scoring import bi_scores as core_bi_scores
from trans_encoder_core.scoring import cross_scores as core_cross_scores
from trans_encoder_core.training import TrainResult

DEV_TASK = "stsb_dev"


def _columns(table: Any) -> tuple[list[str], list[str]]:
    return table["sentence1"].to_pylist(), table["sentence2"].to_pylist()


def _label_stats(scores: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "min": float(scores.min()),
        "max": float(scores.max()),
        "n": int(scores.size),
        "out_of_range": int(np.count_nonzero((scores < 0) | (scores > 1))),
    }


def _fit_summary(result: TrainResult, resumed_from_step: int | None = None) -> dict[str, Any]:
    return {
        "resumed_from_step": resumed_from_step,
        "dev": result.best_score,
        "best_step": result.best_step,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 2),
        "precision": result.precision,
        "loss_first": result.losses[0] if result.losses else None,
        "loss_last": result.losses[-1] if result.losses else None,
        "history": [[p.global_step, round(p.score, 4)] for p in result.history],
    }


def write_results(
    folder: Path, results: dict[str, float], missing: Any, tasks: list[str], **extra: Any
) -> dict[str, Any]:
    """An evaluation stage's results.json: Spearman per task, what is missing, the average over `tasks`."""
    payload = {
        **extra,
        "tasks": results,
        "missing": missing,
        "average": mean_over_present(results, tasks),
        "complete": not missing,
    }
    (folder / RESULTS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
    return payload


def _write_labels(table: Any, scores: Any, folder: Path, lineage: dict[str, Any], key: str) -> None:
    """The stage's pseudo-label table (pairs + float32 score) with its lineage in the Parquet metadata."""
    write_table(labels_table(table, scores), folder, LABELS_FILE, {**lineage, "key": key})


def _dev_set(dev: dict[str, str] | None) -> Any:
    return load_stsb(dev["data"], "dev") if dev else None


@pipeline_task
def bi_scores(
    store_root: str,
    model: dict[str, str],
    pairs: dict[str, Any],
    bi: BiEncoderConfig,
    device: str = "auto",
    cycle: int = 1,
) -> dict[str, Any]:
    """Label every pool pair with the bi-encoder's cosine (step A)."""
    store = Store(store_root)
    config = {"pooling": bi.pooling, "max_seq_length": bi.max_seq_length}

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table = read_table(store, pairs["uri"], PAIRS_FILE)
        enc = load_bi(
            store,
            model["ref"],
            pooling=bi.pooling,
            max_seq_length=bi.max_seq_length,
            device=resolve_device(device),
        )
        scores = core_bi_scores(enc, *_columns(table), batch_size=bi.score_batch_size)
        _write_labels(
            table, scores, folder, {"stage": "bi_scores", "cycle": cycle, "model": model["ref"]}, key
        )
        return {"labels": _label_stats(scores), "pooling": enc.pooling}

    return run_stage(
        store, "bi_scores", cycle, config, {"model": model["digest"], "pairs": pairs["digest"]}, compute
    )


@pipeline_task
def cross_scores(
    store_root: str,
    model: dict[str, str],
    pairs: dict[str, Any],
    cross: CrossEncoderConfig,
    device: str = "auto",
    cycle: int = 1,
) -> dict[str, Any]:
    """Label every pool pair with the cross-encoder's sigmoid score (step C)."""
    store = Store(store_root)
    config = {"max_length": cross.max_length, "symmetric": cross.symmetric_labels}

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table = read_table(store, pairs["uri"], PAIRS_FILE)
        enc = load_cross(store, model["ref"], max_length=cross.max_length, device=resolve_device(device))
        scores = core_cross_scores(
            enc, *_columns(table), batch_size=cross.score_batch_size, symmetric=cross.symmetric_labels
        )
        lineage = {"stage": "cross_scores", "cycle": cycle, "model": model["ref"]}
        _write_labels(table, scores, folder, lineage, key)
        return {"labels": _label_stats(scores)}

    return run_stage(
        store, "cross_scores", cycle, config, {"model": model["digest"], "pairs": pairs["digest"]}, compute
    )


def _checkpointing(store: Store, stage: str, key: str, cycle: int) -> dict[str, Any]:
    """Fit keyword arguments that checkpoint into the store and resume from it."""
    uri = store.uri("checkpoints", stage, key, "state.safetensors")
    fault = injected_fault(stage, cycle)

    def checkpoint(state: Any) -> None:
        save_checkpoint(store, uri, state)
        if fault == "kill":
            kill_self()

    return {
        "checkpoint": checkpoint,
        "resume": load_checkpoint(store, uri),
        "progress": training_progress(stage, cycle),
    }


def _resumed_step(ckpt: dict[str, Any]) -> int | None:
    return ckpt["resume"].global_step if ckpt["resume"] is not None else None


def _drop_checkpoints(store: Store, stage: str) -> Any:
    return lambda key: store.delete(store.uri("checkpoints", stage, key))


@pipeline_task
def train_cross(
    store_root: str,
    labels: dict[str, Any],
    start: dict[str, str],
    cross: CrossEncoderConfig,
    dev: dict[str, str] | None,
    device: str = "auto",
    cycle: int = 1,
    checkpoint_steps: int = 0,
) -> dict[str, Any]:
    """Bi→cross distillation from `start` on the bi-encoder's labels (step B)."""
    store = Store(store_root)
    config = cross.model_dump(exclude={"score_batch_size", "eval_max_length", "model"})
    inputs = {"labels": labels["digest"], "start": start["digest"], "dev": dev["digest"] if dev else "none"}

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table = read_table(store, labels["uri"], LABELS_FILE)
        enc = load_cross(store, start["ref"], max_length=cross.max_length, device=resolve_device(device))
        dev_set = _dev_set(dev)
        evaluate = (
            dev_evaluator(cross_scorer(enc, batch_size=cross.score_batch_size), dev_set) if dev_set else None
        )
        ckpt = _checkpointing(store, "train_cross", key, cycle)
        resumed = _resumed_step(ckpt)
        result = train_cross_encoder(
            enc,
            *_columns(table),
            table["score"].to_numpy(),
            cross,
            evaluate=evaluate,
            checkpoint_steps=checkpoint_steps,
            **ckpt,
        )
        enc.save(folder)
        return _fit_summary(result, resumed)

    return run_stage(
        store,
        "train_cross",
        cycle,
        config,
        inputs,
        compute,
        after_commit=_drop_checkpoints(store, "train_cross"),
    )


@pipeline_task
def train_bi(
    store_root: str,
    labels: dict[str, Any],
    start: dict[str, str],
    bi: BiEncoderConfig,
    dev: dict[str, str] | None,
    device: str = "auto",
    cycle: int = 1,
    checkpoint_steps: int = 0,
    mix_labels: dict[str, Any] | None = None,
    mix_weight: float = 0.0,
    calibrate: bool = False,
) -> dict[str, Any]:
    """Cross→bi distillation from `start` on the cross-encoder's labels (step D).

    `mix_weight` > 0 trains on (1 - w) · cross labels + w · `mix_labels`; `calibrate` first maps the
    cross labels onto the distribution of `mix_labels` keeping their ranks (both options of ours, off in
    the paper; `core.distillation.quantile_calibrate`).
    """
    store = Store(store_root)
    if calibrate and mix_labels is None:
        raise ValueError("train_bi: calibrate=True needs mix_labels (the bi-encoder's own scores).")
    uses_mix = mix_labels is not None and (mix_weight > 0 or calibrate)
    config = {**bi.model_dump(exclude={"score_batch_size", "model"}), "mix_weight": mix_weight}
    if calibrate:  # only when on, so that the keys of earlier runs stay valid
        config["calibration"] = "quantile"
    inputs = {
        "labels": labels["digest"],
        "start": start["digest"],
        "dev": dev["digest"] if dev else "none",
        "mix": mix_labels["digest"] if uses_mix else "none",
    }

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table = read_table(store, labels["uri"], LABELS_FILE)
        target = table["score"].to_numpy().astype(np.float64)
        if uses_mix:
            other = read_table(store, mix_labels["uri"], LABELS_FILE)["score"].to_numpy()
            if calibrate:
                target = quantile_calibrate(target, other)
            target = (1 - mix_weight) * target + mix_weight * other
        enc = load_bi(
            store,
            start["ref"],
            pooling=bi.pooling,
            max_seq_length=bi.max_seq_length,
            device=resolve_device(device),
        )
        dev_set = _dev_set(dev)
        evaluate = dev_evaluator(bi_scorer(enc, batch_size=bi.score_batch_size), dev_set) if dev_set else None
        ckpt = _checkpointing(store, "train_bi", key, cycle)
        resumed = _resumed_step(ckpt)
        result = train_bi_encoder(
            enc,
            *_columns(table),
            target.astype(np.float32),
            bi,
            evaluate=evaluate,
            checkpoint_steps=checkpoint_steps,
            **ckpt,
        )
        enc.save(folder)
        return _fit_summary(result, resumed)

    return run_stage(
        store, "train_bi", cycle, config, inputs, compute, after_commit=_drop_checkpoints(store, "train_bi")
    )


@pipeline_task
def evaluate(
    store_root: str,
    model: dict[str, str],
    kind: str,
    data: dict[str, str] | None,
    tasks: list[str],
    bi: BiEncoderConfig,
    cross: CrossEncoderConfig,
    device: str = "auto",
    cycle: int = 0,
) -> dict[str, Any]:
    """Spearman × 100 of one model on every available benchmark (and STS-B dev)."""
    store = Store(store_root)
    length = bi.max_seq_length if kind == "bi" else cross.eval_max_length
    config = {
        "kind": kind,
        "tasks": sorted(tasks),
        "length": length,
        "pooling": bi.pooling if kind == "bi" else None,
    }
    inputs = {"model": model["digest"], "data": data["digest"] if data else "none"}

    def compute(folder: Path, key: str) -> dict[str, Any]:
        results, missing = _evaluate_model(store, model, kind, data, tasks, bi, cross, device)
        return write_results(folder, results, missing, tasks)

    return run_stage(store, "evaluate", cycle, config, inputs, compute)


def _evaluate_model(
    store: Store,
    model: dict[str, str],
    kind: str,
    data: dict[str, str] | None,
    tasks: list[str],
    bi: BiEncoderConfig,
    cross: CrossEncoderConfig,
    device: str,
) -> tuple[dict[str, float], dict[str, str]]:
    if data is None:
        return {}, {task: "no benchmark folder (set TRANS_ENCODER_DATA or --data)" for task in tasks}
    dev_dev = resolve_device(device)
    if kind == "bi":
        enc = load_bi(
            store, model["ref"], pooling=bi.pooling, max_seq_length=bi.max_seq_length, device=dev_dev
        )
        scorer = bi_scorer(enc, batch_size=bi.score_batch_size)
    else:
        enc = load_cross(store, model["ref"], max_length=cross.max_length, device=dev_dev)
        scorer = cross_scorer(enc, batch_size=cross.score_batch_size, max_length=cross.eval_max_length)
    availability = available_tasks(data["data"])
    missing = {t: reason for t in tasks if (reason := availability.get(t))}
    sets = {t: load_task(data["data"], t) for t in tasks if t not in missing}
    if availability.get("stsb") is None:
        sets[DEV_TASK] = load_stsb(data["data"], "dev")
    return evaluate_scorer(scorer, sets), missing
