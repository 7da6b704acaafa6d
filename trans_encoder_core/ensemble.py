"""Averaging several models' pseudo-labels (paper §2, mutual distillation; algorithm.md §1.6).

Only the pseudo-labels are shared between the PLMs: per pair, the unweighted mean of the models'
scores. Tables are joined on `pair_id` (never on row order), the mean becomes the `score` column of a
new labels table, and every model's own score is kept as `score__<name>` for diagnostics, together
with how much the models disagree (spread) and agree (pairwise Spearman).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from trans_encoder_core.metrics import spearman
from trans_encoder_core.schema import labels_table

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SCORE_PREFIX = "score__"


@dataclass(frozen=True)
class AveragedLabels:
    """The averaged labels table and its diagnostics (JSON-ready)."""

    table: pa.Table
    metrics: dict[str, Any]


def check_model_name(name: str) -> str:
    """A model name usable as a column suffix and in file names, or a ValueError saying why not."""
    if not MODEL_NAME.match(name):
        raise ValueError(
            f"Model names expect letters, digits, '.', '_' or '-' (at most 64, not starting with a "
            f"symbol), got {name!r}; choose a plain name such as 'bert' or 'roberta-s2'."
        )
    return name


def _aligned_scores(tables: Mapping[str, pa.Table]) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """The pairs of the first model (by name) and every model's scores in that order (joined on pair_id)."""
    names = sorted(tables)
    base = tables[names[0]]
    ids = base["pair_id"].to_pylist()
    scores: dict[str, np.ndarray] = {}
    for name in names:
        table = tables[name]
        position = {pid: row for row, pid in enumerate(table["pair_id"].to_pylist())}
        missing = [pid for pid in ids if pid not in position]
        if missing or len(position) != len(ids):
            raise ValueError(
                f"Label averaging expects every model to label the same pairs, got {len(position)} pairs "
                f"from '{name}' and {len(ids)} from '{names[0]}' ({len(missing)} of the latter missing, "
                f"e.g. {missing[:1]}); score the same pair table with every model."
            )
        values = table["score"].to_numpy().astype(np.float64)
        scores[name] = values[[position[pid] for pid in ids]]
    return base, scores


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 4)


def label_agreement(scores: Mapping[str, np.ndarray]) -> dict[str, float | None]:
    """Pairwise Spearman × 100 between models' labels, keyed "a~b" (None when one is constant)."""
    return {
        f"{a}~{b}": _finite_or_none(spearman(scores[a], scores[b]))
        for a, b in itertools.combinations(sorted(scores), 2)
    }


def _diagnostics(scores: Mapping[str, np.ndarray], mean: np.ndarray) -> dict[str, Any]:
    stack = np.stack([scores[name] for name in sorted(scores)])
    agreement = label_agreement(scores)
    present = [v for v in agreement.values() if v is not None]
    return {
        "models": sorted(scores),
        "n": int(mean.size),
        "mean": float(mean.mean()),
        "std": float(mean.std()),
        "spread": float((stack.max(0) - stack.min(0)).mean()),
        "model_std": float(stack.std(0).mean()),
        "per_model_mean": {name: float(scores[name].mean()) for name in sorted(scores)},
        "agreement": agreement,
        "agreement_mean": float(np.mean(present)) if present else None,
    }


def average_labels(tables: Mapping[str, pa.Table]) -> AveragedLabels:
    """Unweighted per-pair mean of several models' labels tables (algorithm.md §1.6).

    Args:
        tables: model name → its labels table (LABELS_SCHEMA) over the same pairs; at least two.

    Returns:
        A labels table in the pair order of the first model by name with `score` = the mean and one
        `score__<name>` column per model, plus diagnostics: `spread` (mean over pairs of max - min
        across models), `model_std` (mean per-pair standard deviation), and `agreement` (pairwise
        Spearman × 100 between the models' labels).
    """
    if len(tables) < 2:
        raise ValueError(
            f"Label averaging expects the tables of at least 2 models, got {len(tables)}; mutual "
            "distillation needs two or more PLMs."
        )
    for name in tables:
        check_model_name(name)
    base, scores = _aligned_scores(tables)
    mean = np.mean(np.stack([scores[name] for name in sorted(scores)]), axis=0)
    extra = {f"{SCORE_PREFIX}{name}": scores[name] for name in sorted(scores)}
    table = labels_table(base, mean.astype(np.float32), extra)
    return AveragedLabels(table, _diagnostics(scores, mean))
