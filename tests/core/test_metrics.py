"""Tests for the correlation metrics and task averages (trans_encoder_core.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from trans_encoder_core.benchmarks import TASKS
from trans_encoder_core.metrics import average_over_tasks, mean_over_present, pearson, spearman


@pytest.fixture
def sample() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, size=200)
    return gold + rng.normal(0, 1.5, size=200), gold


def test_match_scipy_times_100(sample: tuple[np.ndarray, np.ndarray]) -> None:
    pred, gold = sample
    assert spearman(pred, gold) == pytest.approx(stats.spearmanr(pred, gold).statistic * 100)
    assert pearson(pred, gold) == pytest.approx(stats.pearsonr(pred, gold).statistic * 100)
    assert spearman(gold, gold) == pytest.approx(100.0)
    assert spearman(-gold, gold) == pytest.approx(-100.0)
    assert spearman(list(pred.astype(np.float32)), list(gold)) == pytest.approx(
        spearman(pred, gold), abs=1e-6
    )


def test_nan_gold_rows_are_ignored(sample: tuple[np.ndarray, np.ndarray]) -> None:
    pred, gold = sample
    gold_with_nan = gold.copy()
    gold_with_nan[::3] = np.nan
    keep = ~np.isnan(gold_with_nan)
    expected = stats.spearmanr(pred[keep], gold[keep]).statistic * 100
    assert spearman(pred, gold_with_nan) == pytest.approx(expected)
    assert pearson(pred, gold_with_nan) == pytest.approx(
        stats.pearsonr(pred[keep], gold[keep]).statistic * 100
    )


@pytest.mark.parametrize("metric", [spearman, pearson])
def test_errors(metric) -> None:
    with pytest.raises(ValueError, match=r"equal length, got shapes \(3,\) \(pred\) and \(2,\) \(gold\)"):
        metric([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=r"at least 2 rows with a gold score, got 1"):
        metric([1, 2, 3], [1, np.nan, np.nan])
    with pytest.raises(ValueError, match=r"finite predictions, got nan at scored row 1"):
        metric([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match=r"1-D arrays"):
        metric(np.zeros((2, 2)), np.zeros((2, 2)))


@pytest.mark.parametrize("metric", [spearman, pearson])
def test_constant_input_is_nan(metric) -> None:
    assert math.isnan(metric([0.5, 0.5, 0.5], [1, 2, 3]))
    assert math.isnan(metric([1, 2, 3], [2, 2, 2]))


def test_average_over_all_tasks() -> None:
    results = {task: float(i) for i, task in enumerate(TASKS)}
    mean, missing = average_over_tasks(results)
    assert mean == pytest.approx(3.0) and missing == []
    assert average_over_tasks({**results, "extra": 100.0})[0] == pytest.approx(3.0)


def test_average_with_missing_tasks_is_none() -> None:
    results = {task: 80.0 for task in TASKS if task != "sickr"}
    results["sts13"] = 70.0
    mean, missing = average_over_tasks(results)
    assert mean is None and missing == ["sickr"]
    assert mean_over_present(results) == pytest.approx((5 * 80 + 70) / 6)
    assert average_over_tasks(results, tasks=TASKS[:6]) == (pytest.approx((5 * 80 + 70) / 6), [])
    assert average_over_tasks({}, tasks=["sts12", "stsb"]) == (None, ["sts12", "stsb"])
    assert mean_over_present({}) is None
