"""The two distillation losses against hand-computed references (trans_encoder_core.losses, §1.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trans_encoder_core.losses import cosine_mse, soft_bce_with_logits


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_soft_bce_matches_the_formula_including_a_negative_target() -> None:
    logits = [2.0, -1.0, 0.0, 0.5, -3.0]
    targets = [0.8, 0.1, 0.5, -0.2, 1.0]  # -0.2: a raw negative cosine, accepted as is
    ref = -sum(
        y * math.log(_sigmoid(x)) + (1 - y) * math.log(1 - _sigmoid(x))
        for x, y in zip(logits, targets, strict=True)
    ) / len(logits)
    got = soft_bce_with_logits(torch.tensor(logits), torch.tensor(targets, dtype=torch.float64))
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(ref, rel=1e-6)


def test_soft_bce_gradient_is_sigmoid_minus_target_over_n() -> None:
    logits = torch.tensor([2.0, -1.0, 0.0, 0.5], requires_grad=True)
    targets = torch.tensor([0.8, 0.1, 0.5, -0.2])
    soft_bce_with_logits(logits, targets).backward()
    ref = (torch.sigmoid(logits.detach()) - targets) / len(targets)
    torch.testing.assert_close(logits.grad, ref, atol=1e-7, rtol=1e-6)


def test_soft_bce_is_stable_for_large_logits() -> None:
    got = soft_bce_with_logits(torch.tensor([80.0, -80.0]), torch.tensor([1.0, 0.0]))
    assert math.isfinite(got.item()) and got.item() == pytest.approx(0.0, abs=1e-12)
    # A target of 0.3 with a huge logit: loss ~ (1 - 0.3) * 80 per row, finite.
    assert soft_bce_with_logits(torch.tensor([80.0]), torch.tensor([0.3])).item() == pytest.approx(
        56.0, rel=1e-5
    )


def test_soft_bce_accepts_half_precision_inputs() -> None:
    got = soft_bce_with_logits(torch.tensor([1.0], dtype=torch.bfloat16), torch.tensor([0.25]))
    ref = -(0.25 * math.log(_sigmoid(1.0)) + 0.75 * math.log(1 - _sigmoid(1.0)))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(ref, rel=1e-6)


def test_cosine_mse_matches_numpy() -> None:
    first = np.array([[1.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    second = np.array([[0.0, 1.0, 0.0], [2.0, 4.0, 6.0], [-1.0, 0.5, 0.25]])
    targets = np.array([0.3, 0.9, 0.1])
    cos = (first * second).sum(1) / (np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1))
    assert cos[0] == 0.0 and cos[1] == pytest.approx(1.0)  # orthogonal and parallel rows
    ref = float(np.mean((cos - targets) ** 2))
    got = cosine_mse(
        torch.tensor(first, dtype=torch.float32),
        torch.tensor(second, dtype=torch.float32),
        torch.tensor(targets),
    )
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(ref, rel=1e-5)


def test_cosine_mse_ignores_vector_scale_and_is_zero_at_the_target() -> None:
    a = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    b = torch.tensor([[2.0, 1.0], [1.0, 1.0]])
    cos = torch.nn.functional.cosine_similarity(a, b)
    assert cosine_mse(a, b, cos).item() == pytest.approx(0.0, abs=1e-12)
    assert cosine_mse(10 * a, 0.1 * b, torch.zeros(2)).item() == pytest.approx(
        cosine_mse(a, b, torch.zeros(2)).item()
    )


def test_quantile_calibrate_keeps_ranks_and_takes_the_reference_values() -> None:
    from trans_encoder_core.distillation import quantile_calibrate

    cross = np.array([0.9, 0.1, 0.5, 0.5, 0.3])
    bi = np.array([0.2, -0.1, 0.8, 0.4, 0.6])
    out = quantile_calibrate(cross, bi)
    assert sorted(out) == sorted(bi)  # the bi-encoder's own distribution
    assert list(np.argsort(out, kind="stable")) == list(np.argsort(cross, kind="stable"))  # cross's ranks
    assert out.tolist() == [0.8, -0.1, 0.4, 0.6, 0.2]  # tie 0.5/0.5 keeps row order
    with pytest.raises(ValueError, match="aligned 1-d"):
        quantile_calibrate(cross, bi[:4])
