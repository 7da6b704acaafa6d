"""Spearman evaluation of bi-encoders, cross-encoders and their ensembles (algorithm.md §3.3)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from trans_encoder_core.benchmarks import LabelledPairs
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.metrics import metric_function
from trans_encoder_core.scoring import bi_scores, cross_scores

Scorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def bi_scorer(bi: BiEncoder, *, batch_size: int = 128, precision: str = "fp32") -> Scorer:
    """Cosine scorer of the bi-encoder in memory (as it is at each call: no reload)."""
    return lambda a, b: bi_scores(bi, a, b, batch_size=batch_size, precision=precision)


def cross_scorer(
    cross: CrossEncoder, *, batch_size: int = 64, max_length: int | None = None, precision: str = "fp32"
) -> Scorer:
    """Sigmoid scorer of a cross-encoder at a given pair length (None: its training length)."""
    return lambda a, b: cross_scores(
        cross, a, b, batch_size=batch_size, max_length=max_length, precision=precision
    )


def mean_scores(members: Sequence[np.ndarray]) -> np.ndarray:
    """Unweighted mean per pair of several models' scores (algorithm.md §1.6), as float32."""
    return np.mean(members, axis=0).astype(np.float32)


def ensemble_scorer(scorers: Sequence[Scorer]) -> Scorer:
    """The scorer of `mean_scores` over several scorers' outputs."""
    return lambda a, b: mean_scores([s(a, b) for s in scorers])


def score_sets(scorer: Scorer, tasks: Mapping[str, LabelledPairs]) -> dict[str, np.ndarray]:
    """Each set's scores on its scored rows, in their order (what `set_metrics` ranks)."""
    return {name: scorer(*_pairs(data)) for name, data in tasks.items()}


def _pairs(data: LabelledPairs) -> tuple[Sequence[str], Sequence[str]]:
    scored = data.scored()
    return scored.sentence1, scored.sentence2


def set_metrics(scores: Mapping[str, np.ndarray], tasks: Mapping[str, LabelledPairs]) -> dict[str, float]:
    """Each task's metric × 100 of `scores` on its scored rows: Spearman, or an ``EvalSet``'s ``metric``."""
    return {
        name: metric_function(getattr(data, "metric", "spearman"))(scores[name], data.scored().scores)
        for name, data in tasks.items()
    }


def evaluate_scorer(scorer: Scorer, tasks: Mapping[str, LabelledPairs]) -> dict[str, float]:
    """Each task's metric × 100 of `scorer` on its scored rows."""
    return set_metrics(score_sets(scorer, tasks), tasks)


def dev_evaluator(scorer: Scorer, dev: LabelledPairs) -> Callable[[], float]:
    """A zero-argument callable for `training.fit`: the dev set's metric (Spearman unless an EvalSet's)."""
    scored, metric = dev.scored(), metric_function(getattr(dev, "metric", "spearman"))
    return lambda: metric(scorer(scored.sentence1, scored.sentence2), scored.scores)
