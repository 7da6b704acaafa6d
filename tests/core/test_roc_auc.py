"""Tests for ROC-AUC × 100 from ranks (trans_encoder_core.metrics.roc_auc, algorithm.md §1.7)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trans_encoder_core.metrics import METRICS, metric_function, roc_auc


def brute_force_auc(pred: np.ndarray, gold: np.ndarray) -> float:
    """Count every (positive, negative) pair: 1 when the positive scores higher, 1/2 on a tie."""
    pos, neg = pred[gold == 1], pred[gold == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins) / (pos.size * neg.size) * 100.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_pair_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, size=150).astype(np.float64)
    pred = np.round(gold * 0.3 + rng.normal(0, 0.5, size=150), 1)  # rounding makes many ties
    assert len(np.unique(pred)) < pred.size  # the case under test: ties across classes
    assert roc_auc(pred, gold) == pytest.approx(brute_force_auc(pred, gold), abs=1e-9)


def test_matches_sklearn_when_installed() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed")
    rng = np.random.default_rng(5)
    gold = rng.integers(0, 2, size=300)
    pred = np.round(gold + rng.normal(0, 1.0, size=300), 1).astype(np.float32)
    expected = sklearn_metrics.roc_auc_score(gold, pred) * 100
    assert roc_auc(pred, gold) == pytest.approx(expected, abs=1e-9)


def test_extremes_and_invariances() -> None:
    gold = np.array([0, 0, 1, 1, 0, 1], dtype=np.float64)
    assert roc_auc(gold, gold) == pytest.approx(100.0)
    assert roc_auc(-gold, gold) == pytest.approx(0.0)
    assert roc_auc(np.zeros(6), gold) == pytest.approx(50.0)  # all ties
    pred = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.3])
    assert roc_auc(np.exp(pred * 5), gold) == pytest.approx(roc_auc(pred, gold))  # rank-based


def test_nan_gold_ignored_and_one_class_is_nan() -> None:
    pred = np.array([0.1, 0.9, 0.5, 0.3])
    assert roc_auc(pred, [0, 1, np.nan, 0]) == pytest.approx(100.0)
    assert math.isnan(roc_auc(pred, [1, 1, 1, 1]))


def test_rejects_non_binary_labels_and_bad_predictions() -> None:
    with pytest.raises(ValueError, match=r"roc_auc expects gold labels 0 or 1, got 0.5 at scored row 2"):
        roc_auc([0.1, 0.2, 0.3], [0, 1, 0.5])
    with pytest.raises(ValueError, match="finite predictions"):
        roc_auc([0.1, np.nan, 0.3], [0, 1, 1])
    with pytest.raises(ValueError, match="equal length"):
        roc_auc([0.1, 0.2], [0, 1, 1])


def test_metric_registry() -> None:
    assert set(METRICS) == {"spearman", "roc_auc"}
    assert metric_function("roc_auc") is roc_auc
    with pytest.raises(ValueError, match="metric_function expects one of"):
        metric_function("accuracy")
