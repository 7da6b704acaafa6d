"""The stages of one Trans-Encoder cycle (algorithm.md §1.4): bi_scores → train_cross → cross_scores →
train_bi. Each is a thin wrapper over one core function; its key is declared in tasks/keys.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasks import keys
from tasks.artifacts import LABELS_FILE, PAIRS_FILE, load_encoder, read_table, write_table
from tasks.checkpoints import checkpointed_fit, drop_checkpoints, fit_summary, resumed_step
from tasks.inputs import dev_set, score_precision, stage_precision
from tasks.stages import pipeline_task, run_stage
from tasks.store import Store
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig
from trans_encoder_core.distillation import bi_targets, train_bi_encoder, train_cross_encoder
from trans_encoder_core.evaluation import bi_scorer, cross_scorer, dev_evaluator
from trans_encoder_core.runtime import resolve_device
from trans_encoder_core.schema import labels_table
from trans_encoder_core.scoring import bi_scores as core_bi_scores
from trans_encoder_core.scoring import cross_scores as core_cross_scores

Ref = dict[str, Any]


def _columns(table: Any) -> tuple[list[str], list[str]]:
    return table["sentence1"].to_pylist(), table["sentence2"].to_pylist()


def label_stats(scores: np.ndarray) -> dict[str, float]:
    """Summary statistics of a pseudo-label column (the report shows them per cycle)."""
    return {
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "min": float(scores.min()),
        "max": float(scores.max()),
        "n": int(scores.size),
        "out_of_range": int(np.count_nonzero((scores < 0) | (scores > 1))),
    }


def _precision_note(precision_key: str | None) -> dict[str, str]:
    """A scoring stage's summary names its precision when it is not fp32 (the summaries of fp32
    stages stay byte for byte what they were)."""
    return {"precision": precision_key} if precision_key else {}


def _write_labels(table: Any, scores: Any, folder: Path, lineage: dict[str, Any], key: str) -> None:
    """The stage's pseudo-label table (pairs + float32 score) with its lineage in the Parquet metadata."""
    write_table(labels_table(table, scores), folder, LABELS_FILE, {**lineage, "key": key})


@pipeline_task
def bi_scores(
    store_root: str, model: Ref, pairs: Ref, bi: BiEncoderConfig, device: str = "auto", cycle: int = 1
) -> dict[str, Any]:
    """Label every pool pair with the bi-encoder's cosine (step A)."""
    store = Store(store_root)
    where = resolve_device(device)
    precision, precision_key = score_precision(bi.score_precision, where)

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table = read_table(store, pairs["uri"], PAIRS_FILE)
        enc = load_encoder(store, model["ref"], "bi", bi, where)
        scores = core_bi_scores(enc, *_columns(table), batch_size=bi.score_batch_size, precision=precision)
        lineage = {"stage": "bi_scores", "cycle": cycle, "model": model["ref"]}
        _write_labels(table, scores, folder, lineage, key)
        return {"labels": label_stats(scores), "pooling": enc.pooling} | _precision_note(precision_key)

    return run_stage(store, "bi_scores", cycle, *keys.bi_scores(bi, model, pairs, precision_key), compute)


@pipeline_task
def cross_scores(
    store_root: str, model: Ref, pairs: Ref, cross: CrossEncoderConfig, device: str = "auto", cycle: int = 1
) -> dict[str, Any]:
    """Label every pool pair with the cross-encoder's sigmoid score (step C)."""
    store = Store(store_root)
    where = resolve_device(device)
    precision, precision_key = score_precision(cross.score_precision, where)

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table = read_table(store, pairs["uri"], PAIRS_FILE)
        enc = load_encoder(store, model["ref"], "cross", cross, where)
        scores = core_cross_scores(
            enc,
            *_columns(table),
            batch_size=cross.score_batch_size,
            symmetric=cross.symmetric_labels,
            precision=precision,
        )
        lineage = {"stage": "cross_scores", "cycle": cycle, "model": model["ref"]}
        _write_labels(table, scores, folder, lineage, key)
        return {"labels": label_stats(scores)} | _precision_note(precision_key)

    key_parts = keys.cross_scores(cross, model, pairs, precision_key)
    return run_stage(store, "cross_scores", cycle, *key_parts, compute)


@pipeline_task
def train_cross(
    store_root: str,
    labels: Ref,
    start: Ref,
    cross: CrossEncoderConfig,
    dev: Ref | None,
    device: str = "auto",
    cycle: int = 1,
    checkpoint_steps: int = 0,
) -> dict[str, Any]:
    """Bi→cross distillation from `start` on the bi-encoder's labels (step B)."""
    store = Store(store_root)
    where = resolve_device(device)
    precision, precision_key = stage_precision(cross.fit.precision, where)
    run = cross.model_copy(update={"fit": cross.fit.model_copy(update={"precision": precision})})

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table = read_table(store, labels["uri"], LABELS_FILE)
        enc = load_encoder(store, start["ref"], "cross", cross, where)
        enc.packing = cross.fit.packing  # padding-free batches while training (exact; opt-in)
        dev_pairs = dev_set(dev)
        scorer = cross_scorer(enc, batch_size=cross.score_batch_size)
        evaluate = dev_evaluator(scorer, dev_pairs) if dev_pairs else None
        fit = checkpointed_fit(store, "train_cross", key, cycle)
        resumed = resumed_step(fit)
        result = train_cross_encoder(
            enc,
            *_columns(table),
            table["score"].to_numpy(),
            run,
            evaluate=evaluate,
            checkpoint_steps=checkpoint_steps,
            **fit,
        )
        enc.save(folder)
        return fit_summary(result, resumed)

    return run_stage(
        store,
        "train_cross",
        cycle,
        *keys.train_cross(cross, labels, start, dev, precision_key),
        compute,
        after_commit=drop_checkpoints(store, "train_cross"),
    )


@pipeline_task
def train_bi(
    store_root: str,
    labels: Ref,
    start: Ref,
    bi: BiEncoderConfig,
    dev: Ref | None,
    device: str = "auto",
    cycle: int = 1,
    checkpoint_steps: int = 0,
    mix_labels: Ref | None = None,
    mix_weight: float = 0.0,
    calibrate: bool = False,
) -> dict[str, Any]:
    """Cross→bi distillation from `start` on the cross-encoder's labels (step D).

    `mix_weight` > 0 trains on (1 - w) · cross labels + w · `mix_labels`; `calibrate` first maps the
    cross labels onto the distribution of `mix_labels` keeping their ranks (`core.distillation.bi_targets`).
    """
    store = Store(store_root)
    if calibrate and mix_labels is None:
        raise ValueError("train_bi: calibrate=True needs mix_labels (the bi-encoder's own scores).")
    where = resolve_device(device)
    precision, precision_key = stage_precision(bi.fit.precision, where)
    run = bi.model_copy(update={"fit": bi.fit.model_copy(update={"precision": precision})})
    options = {"mix_labels": mix_labels, "mix_weight": mix_weight, "calibrate": calibrate}
    key = keys.train_bi(bi, labels, start, dev, **options, precision=precision_key)

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table = read_table(store, labels["uri"], LABELS_FILE)
        uses_mix = mix_labels is not None and (mix_weight > 0 or calibrate)
        other = read_table(store, mix_labels["uri"], LABELS_FILE)["score"].to_numpy() if uses_mix else None
        target = bi_targets(table["score"].to_numpy(), other, mix_weight=mix_weight, calibrate=calibrate)
        enc = load_encoder(store, start["ref"], "bi", bi, where)
        enc.packing = bi.fit.packing
        dev_pairs = dev_set(dev)
        scorer = bi_scorer(enc, batch_size=bi.score_batch_size)
        evaluate = dev_evaluator(scorer, dev_pairs) if dev_pairs else None
        fit = checkpointed_fit(store, "train_bi", key, cycle)
        resumed = resumed_step(fit)
        result = train_bi_encoder(
            enc, *_columns(table), target, run, evaluate=evaluate, checkpoint_steps=checkpoint_steps, **fit
        )
        enc.save(folder)
        return fit_summary(result, resumed)

    return run_stage(
        store, "train_bi", cycle, *key, compute, after_commit=drop_checkpoints(store, "train_bi")
    )
