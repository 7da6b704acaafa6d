"""The two distillation steps of a Trans-Encoder cycle (algorithm.md §1.4 B and D).

`train_cross_encoder`: bi→cross, soft-label BCE on the logit, every pair in both orders.
`train_bi_encoder`: cross→bi, MSE between the cosine and the teacher's probability.
Both return the `training.fit` result; the module then holds its best-dev weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from trans_encoder_core.batching import tokenize_pairs, tokenize_texts, unique_index
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.losses import cosine_mse, soft_bce_with_logits
from trans_encoder_core.training import Evaluate, TrainResult, fit


def quantile_calibrate(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`reference`'s values re-ordered by the ranks of `scores` (rank kept, distribution replaced).

    The bi-encoder learns cosines, the cross-encoder emits sigmoid probabilities: MSE on raw
    probabilities also asks the bi-encoder to recalibrate. Mapping the cross labels onto the
    distribution of the bi-encoder's own cosines leaves only the ranking to learn (an option of ours).
    Ties in `scores` keep row order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if scores.shape != reference.shape or scores.ndim != 1:
        raise ValueError(
            f"quantile_calibrate expects two aligned 1-d score columns, got shapes {scores.shape} and "
            f"{reference.shape}."
        )
    out = np.empty_like(reference)
    out[np.argsort(scores, kind="stable")] = np.sort(reference)
    return out


def bi_targets(
    cross_labels: np.ndarray, bi_labels: np.ndarray | None, *, mix_weight: float, calibrate: bool
) -> np.ndarray:
    """The targets of step D: the cross-encoder's labels, optionally calibrated and mixed (ours).

    `calibrate` maps the cross labels onto the distribution of `bi_labels` keeping their ranks
    (`quantile_calibrate`); `mix_weight` w > 0 then trains on (1 - w) · cross + w · bi. Both are off
    in the paper, where the targets are the cross labels themselves. Returns float32.
    """
    target = np.asarray(cross_labels).astype(np.float64)
    if bi_labels is not None and (mix_weight > 0 or calibrate):
        other = np.asarray(bi_labels)
        if calibrate:
            target = quantile_calibrate(target, other)
        target = (1 - mix_weight) * target + mix_weight * other
    elif calibrate:
        raise ValueError("bi_targets: calibrate=True needs bi_labels (the bi-encoder's own scores).")
    return target.astype(np.float32)


def _check_labels(first: Sequence[str], second: Sequence[str], labels: np.ndarray) -> np.ndarray:
    if not (len(first) == len(second) == len(labels)):
        raise ValueError(
            f"Distillation expects aligned sentence1, sentence2 and score columns, got {len(first)}, "
            f"{len(second)} and {len(labels)} rows."
        )
    values = np.asarray(labels, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"Distillation expects finite pseudo-labels, got {values[bad]} at row {bad}.")
    return values


def cross_training_examples(
    first: Sequence[str], second: Sequence[str], labels: np.ndarray, *, both_orders: bool, clamp: bool
) -> tuple[list[str], list[str], np.ndarray]:
    """The cross-encoder's training list: (s1, s2, y) and, for symmetric tasks, (s2, s1, y)."""
    targets = np.clip(labels, 0.0, 1.0) if clamp else labels
    if not both_orders:
        return list(first), list(second), targets
    return list(first) + list(second), list(second) + list(first), np.concatenate([targets, targets])


def train_cross_encoder(
    cross: CrossEncoder,
    first: Sequence[str],
    second: Sequence[str],
    labels: np.ndarray,
    cfg: CrossEncoderConfig,
    *,
    evaluate: Evaluate | None = None,
    **fit_kwargs: Any,
) -> TrainResult:
    """Bi→cross distillation on the bi-encoder's cosines (raw, unclamped unless configured)."""
    values = _check_labels(first, second, labels)
    a, b, targets = cross_training_examples(
        first, second, values, both_orders=cfg.both_orders, clamp=cfg.clamp_targets
    )
    tokens = tokenize_pairs(cross.tokenizer, a, b, cfg.max_length)
    device = next(cross.parameters()).device
    # a copy: Arrow-backed arrays are read-only
    target_t = torch.tensor(np.asarray(targets, dtype=np.float32))

    def step_loss(idx: np.ndarray) -> torch.Tensor:
        logits = cross(tokens.collate(idx, device))
        return soft_bce_with_logits(logits, target_t[idx].to(device))

    return fit(cross, len(tokens), step_loss, cfg.fit, evaluate=evaluate, **fit_kwargs)


def train_bi_encoder(
    bi: BiEncoder,
    first: Sequence[str],
    second: Sequence[str],
    labels: np.ndarray,
    cfg: BiEncoderConfig,
    *,
    evaluate: Evaluate | None = None,
    **fit_kwargs: Any,
) -> TrainResult:
    """Cross→bi distillation on the cross-encoder's probabilities; one forward pass per batch."""
    values = _check_labels(first, second, labels)
    texts, index = unique_index(list(first) + list(second))
    tokens = tokenize_texts(bi.tokenizer, texts, bi.max_seq_length)
    n = len(first)
    left, right = index[:n], index[n:]
    device = next(bi.parameters()).device
    target_t = torch.as_tensor(values, dtype=torch.float32)

    def step_loss(idx: np.ndarray) -> torch.Tensor:
        emb = bi(tokens.collate(np.concatenate([left[idx], right[idx]]), device))
        return cosine_mse(emb[: len(idx)], emb[len(idx) :], target_t[idx].to(device))

    return fit(bi, n, step_loss, cfg.fit, evaluate=evaluate, **fit_kwargs)
