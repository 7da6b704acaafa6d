"""Choosing the models a run reports (algorithm.md §1.4, "after the loop") and comparing label sets.

Pure functions on plain data: the flows hand in each cycle's dev scores and pseudo-label columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from trans_encoder_core.metrics import spearman

KINDS = ("bi", "cross")


def select_best(
    dev_scores: Mapping[str, Sequence[float | None]],
    start_dev: float | None,
    *,
    dev_selection: bool,
    select_start: bool,
) -> dict[str, int]:
    """The best cycle per formulation by dev score, chosen independently for bi and cross (§1.4).

    Args:
        dev_scores: for "bi" and "cross", the best-dev score of cycles 1..C in order (None: no dev).
        start_dev: the starting bi-encoder's dev score (cycle 0).
        dev_selection: False keeps the last cycle (a truly unsupervised setting).
        select_start: let cycle 0 win the bi selection when no cycle beats it (ours; off in the paper).

    Returns:
        {"bi": cycle, "cross": cycle}; ties go to the earlier cycle.
    """
    n_cycles = len(dev_scores["bi"])
    if not dev_selection or n_cycles == 0:
        return {"bi": n_cycles, "cross": n_cycles}
    best: dict[str, int] = {}
    for kind in KINDS:
        scores = {c + 1: s if s is not None else float("-inf") for c, s in enumerate(dev_scores[kind])}
        if kind == "bi" and select_start:
            scores[0] = start_dev if start_dev is not None else float("-inf")
        best[kind] = max(scores, key=lambda c: (scores[c], -c))
    return best


def label_agreement(
    ids_a: Sequence[str], scores_a: Sequence[float], ids_b: Sequence[str], scores_b: Sequence[float]
) -> float | None:
    """Spearman × 100 between two label sets of the same pairs, joined on pair id.

    None when fewer than two pairs are shared or a side is constant (the correlation is undefined).
    """
    by_id = dict(zip(ids_b, scores_b, strict=True))
    joined = [(a, by_id[p]) for p, a in zip(ids_a, scores_a, strict=True) if p in by_id]
    if len(joined) < 2:
        return None
    value = spearman([a for a, _ in joined], [b for _, b in joined])
    return None if math.isnan(value) else value
