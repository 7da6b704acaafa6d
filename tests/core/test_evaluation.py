"""Scorers and Spearman evaluation (trans_encoder_core.evaluation, algorithm.md §3.3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.tiny import CORPUS
from trans_encoder_core.benchmarks import LabelledPairs
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.evaluation import (
    bi_scorer,
    cross_scorer,
    dev_evaluator,
    ensemble_scorer,
    evaluate_scorer,
)
from trans_encoder_core.scoring import bi_scores, cross_scores

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PAIRS = LabelledPairs(
    "toy",
    CORPUS[:6],
    CORPUS[6:12],
    np.array([0.5, np.nan, 4.0, 2.5, 1.0, 3.0]),  # one pair without a gold score
)


def _fixed(values: list[float]):
    table = dict(zip(zip(PAIRS.sentence1, PAIRS.sentence2, strict=True), values, strict=True))
    return lambda a, b: np.array([table[p] for p in zip(a, b, strict=True)], dtype=np.float32)


def test_evaluate_scorer_uses_only_scored_pairs() -> None:
    pred = [0.1, 99.0, 0.9, 0.3, 0.2, 0.8]
    results = evaluate_scorer(_fixed(pred), {"toy": PAIRS, "again": PAIRS})
    keep = ~np.isnan(PAIRS.scores)
    ref = stats.spearmanr(np.array(pred)[keep], PAIRS.scores[keep]).statistic * 100
    assert results == pytest.approx({"toy": ref, "again": ref})


def test_ensemble_is_the_mean_of_its_members() -> None:
    a, b = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.9, 0.0, 0.1, 0.4, 0.3, 0.2]
    got = ensemble_scorer([_fixed(a), _fixed(b)])(PAIRS.sentence1, PAIRS.sentence2)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, (np.array(a) + np.array(b)) / 2, atol=1e-7)


def test_model_scorers_and_dev_evaluator(tiny_bert: Path, tiny_cross_model: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_bert, pooling="mean")
    cross = CrossEncoder.from_pretrained(tiny_cross_model, max_length=16)
    s1, s2 = PAIRS.sentence1, PAIRS.sentence2
    np.testing.assert_allclose(bi_scorer(bi, batch_size=2)(s1, s2), bi_scores(bi, s1, s2), atol=1e-6)
    np.testing.assert_allclose(cross_scorer(cross)(s1, s2), cross_scores(cross, s1, s2), atol=1e-6)
    np.testing.assert_allclose(
        cross_scorer(cross, max_length=8)(s1, s2), cross_scores(cross, s1, s2, max_length=8), atol=1e-6
    )
    evaluate = dev_evaluator(bi_scorer(bi), PAIRS)
    assert evaluate() == pytest.approx(evaluate_scorer(bi_scorer(bi), {"dev": PAIRS})["dev"])
