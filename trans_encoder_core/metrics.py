"""Correlation and ranking metrics and the 7-task average of the paper's tables (``algorithm.md`` §3.3).

Scores are reported × 100, as in the paper (ROC-AUC for the binary tasks of §1.7). Rows whose *gold*
score is NaN (unscored STS15/16 pairs) are ignored; a NaN *prediction* is a bug in the scorer and raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
from scipy import stats

from trans_encoder_core.benchmarks import TASKS

__all__ = [
    "METRICS",
    "Metric",
    "average_over_tasks",
    "mean_over_present",
    "metric_function",
    "pearson",
    "roc_auc",
    "spearman",
]


def _paired(
    pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return the predictions and gold scores of the rows with a gold score, as float64 arrays."""
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gold, dtype=np.float64)
    if p.ndim != 1 or g.ndim != 1 or p.shape != g.shape:
        raise ValueError(
            f"{metric} expects two 1-D arrays of equal length, got shapes {p.shape} (pred) and {g.shape} "
            "(gold); score every gold pair exactly once."
        )
    keep = ~np.isnan(g)
    p, g = p[keep], g[keep]
    if not np.isfinite(p).all():
        bad = int(np.flatnonzero(~np.isfinite(p))[0])
        raise ValueError(
            f"{metric} expects finite predictions, got {p[bad]} at scored row {bad}; check the scorer output."
        )
    if p.size < 2:
        raise ValueError(
            f"{metric} expects at least 2 rows with a gold score, got {p.size}; pass more pairs."
        )
    return p, g


def _correlation(
    pred: Sequence[float] | np.ndarray,
    gold: Sequence[float] | np.ndarray,
    metric: str,
    fn: Callable[[np.ndarray, np.ndarray], object],
) -> float:
    p, g = _paired(pred, gold, metric)
    if np.ptp(p) == 0 or np.ptp(g) == 0:
        return math.nan  # undefined for a constant input (e.g. a collapsed model); never "best".
    return float(fn(p, g).statistic) * 100.0  # type: ignore[attr-defined]


def spearman(pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation × 100 (``scipy.stats.spearmanr``), ignoring NaN gold rows.

    Returns:
        The correlation × 100, or NaN when either side is constant (the correlation is undefined).

    Raises:
        ValueError: Different lengths, a non-finite prediction, or fewer than 2 scored rows.
    """
    return _correlation(pred, gold, "spearman", stats.spearmanr)


def pearson(pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray) -> float:
    """Pearson's linear correlation × 100 (``scipy.stats.pearsonr``), ignoring NaN gold rows.

    Returns:
        The correlation × 100, or NaN when either side is constant (the correlation is undefined).

    Raises:
        ValueError: Different lengths, a non-finite prediction, or fewer than 2 scored rows.
    """
    return _correlation(pred, gold, "pearson", stats.pearsonr)


def roc_auc(pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve × 100 for 0/1 gold labels (§1.7), ignoring NaN gold rows.

    Computed from ranks (the Mann-Whitney U statistic): the probability that a random positive
    pair scores above a random negative one, a tie counting one half (average ranks).

    Returns:
        The AUC × 100 in [0, 100] (50 for constant predictions), or NaN when only one class is present.

    Raises:
        ValueError: Different lengths, a non-finite prediction, a gold label other than 0 or 1, or
            fewer than 2 scored rows.
    """
    p, g = _paired(pred, gold, "roc_auc")
    bad = np.flatnonzero((g != 0) & (g != 1))
    if bad.size:
        raise ValueError(
            f"roc_auc expects gold labels 0 or 1, got {g[bad[0]]} at scored row {int(bad[0])}; use "
            "spearman for graded scores."
        )
    positive = g == 1
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan  # undefined with one class; never "best".
    ranks = stats.rankdata(p)  # average ranks: each tie counts one half
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg) * 100.0


Metric = Literal["spearman", "roc_auc"]
METRICS: Mapping[str, Callable[[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray], float]] = {
    "spearman": spearman,
    "roc_auc": roc_auc,
}


def metric_function(
    name: str,
) -> Callable[[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray], float]:
    """The metric called ``name`` (one of :data:`METRICS`)."""
    if name not in METRICS:
        raise ValueError(f"metric_function expects one of {sorted(METRICS)}, got {name!r}.")
    return METRICS[name]


def mean_over_present(results: Mapping[str, float], tasks: Sequence[str] = TASKS) -> float | None:
    """Unweighted mean over those of ``tasks`` that appear in ``results``; None if none does."""
    present = [results[task] for task in tasks if task in results]
    return float(np.mean(present)) if present else None


def average_over_tasks(
    results: Mapping[str, float], tasks: Sequence[str] = TASKS
) -> tuple[float | None, list[str]]:
    """The paper's "Avg." column: the unweighted mean over ``tasks`` (§3.3, 7 tasks by default).

    An average over fewer tasks is not comparable with the paper's, so the mean is ``None`` as
    soon as one requested task is missing; the missing tasks are returned so the caller can say
    so. Use :func:`mean_over_present` for the mean over what is there (label it as partial).

    Returns:
        ``(mean or None, missing tasks in ``tasks`` order)``.
    """
    missing = [task for task in tasks if task not in results]
    return (mean_over_present(results, tasks) if not missing else None), missing
