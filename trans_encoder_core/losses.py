"""The two distillation losses of the paper (algorithm.md §1.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Bi→cross: soft-label binary cross-entropy on the cross-encoder's logit, mean over the batch.

    -[y log σ(x) + (1 - y) log(1 - σ(x))], computed stably; targets are the raw teacher cosines,
    with no temperature and no transform (negative targets are accepted, as in the official code).
    """
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def cosine_mse(first: torch.Tensor, second: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross→bi: mean squared error between cos(f(s1), f(s2)) and the teacher's probability."""
    cos = F.cosine_similarity(first.float(), second.float(), dim=-1)
    return F.mse_loss(cos, targets.float())
