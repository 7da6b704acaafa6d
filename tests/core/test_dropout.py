"""Fast dropout (trans_encoder_core.dropout) and the fused optimizer option.

The masks: the drop rate of every int16 lane, reproducibility under torch's seed, the expectation;
the attention function: equal to SDPA without dropout, for boolean, additive and no masks; the
context manager: every dropout of BERT, RoBERTa and MPNet goes through it, eval is unchanged, and
everything is restored after; a fit with both options runs, repeats itself and differs from torch's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny import CORPUS
from trans_encoder_core import dropout as fast
from trans_encoder_core.batching import tokenize_texts
from trans_encoder_core.config import BiEncoderConfig, bi_fit_defaults
from trans_encoder_core.distillation import train_bi_encoder
from trans_encoder_core.encoders import BiEncoder
from trans_encoder_core.training import make_optimizer

pytestmark = pytest.mark.usefixtures("torch_single_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=["bert", "roberta", "mpnet"])
def tiny_model(request: pytest.FixtureRequest, tiny_bert: Path, tiny_roberta: Path, tiny_mpnet: Path) -> Path:
    return {"bert": tiny_bert, "roberta": tiny_roberta, "mpnet": tiny_mpnet}[request.param]


def test_drop_levels_round_p_to_sixteen_bits() -> None:
    assert fast.drop_levels(0.0) == 0
    assert fast.drop_levels(0.1) == 6554  # 0.1000061
    assert fast.drop_levels(1e-9) == 1  # a positive p never becomes no dropout
    assert fast.drop_levels(1.0) == 65536
    with pytest.raises(ValueError, match="between 0 and 1"):
        fast.drop_levels(1.5)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_every_lane_drops_at_the_rounded_rate(p: float) -> None:
    torch.manual_seed(0)
    n = 1 << 22
    mask, scale = fast.keep_mask((n,), p, CPU)
    k = fast.drop_levels(p)
    keep = 1 - k / 65536
    assert scale == pytest.approx(1 / keep, rel=1e-12)
    sigma = (keep * (1 - keep) / (n / 4)) ** 0.5
    rates = mask.view(-1, 4).float().mean(0)  # each of the four int16 lanes of a 64-bit draw
    assert torch.all((rates - keep).abs() < 5 * sigma), rates
    # neighbouring elements are independent: P(both kept) = keep^2
    both = (mask[:-1] & mask[1:]).float().mean().item()
    assert abs(both - keep**2) < 5 * (keep**2 * (1 - keep**2) / n) ** 0.5


def test_masks_follow_torch_seed() -> None:
    torch.manual_seed(7)
    a, _ = fast.keep_mask((3, 1001), 0.1, CPU)
    torch.manual_seed(7)
    b, _ = fast.keep_mask((3, 1001), 0.1, CPU)
    torch.manual_seed(8)
    c, _ = fast.keep_mask((3, 1001), 0.1, CPU)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_dropout_is_mask_times_scale_forward_and_backward() -> None:
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(1)
    mask, scale = fast.keep_mask(x.shape, 0.2, CPU)
    torch.manual_seed(1)
    y = fast.dropout(x, 0.2)
    torch.testing.assert_close(y, x.detach() * mask * scale, atol=0, rtol=0)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, w * mask * scale, atol=1e-6, rtol=1e-6)
    assert fast.dropout(x, 0.2, training=False) is x
    assert fast.dropout(x, 0.0) is x
    assert torch.count_nonzero(fast.dropout(x, 1.0)) == 0


def test_dropout_keeps_the_expectation() -> None:
    torch.manual_seed(2)
    x = torch.full((1 << 20,), 3.0)
    assert fast.dropout(x, 0.1).mean().item() == pytest.approx(3.0, rel=2e-3)


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_attention_without_dropout_equals_sdpa(mask_kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 8, generator=gen) for _ in range(3))
    allowed = torch.rand(2, 1, 9, 9, generator=gen) > 0.3
    allowed |= torch.eye(9, dtype=torch.bool)  # no row all masked
    mask = {
        "bool": allowed,
        "additive": torch.where(allowed, 0.0, torch.finfo(torch.float32).min),
        "none": None,
    }[mask_kind]
    ours = fast.attention_scores_output(q, k, v, mask, 8**-0.5, 0.0)
    sdpa_mask = None if mask is None else allowed
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=sdpa_mask).transpose(1, 2)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def _batch(model: BiEncoder) -> dict[str, torch.Tensor]:
    return tokenize_texts(model.tokenizer, CORPUS[:8], 32).collate(np.arange(8), CPU)


def test_fast_dropout_reaches_every_dropout_and_restores_the_model(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = BiEncoder.from_pretrained(tiny_model, pooling="mean")
    model.packing = True
    batch = _batch(model)
    attn_before = model.model.config._attn_implementation
    n_dropouts = sum(isinstance(m, torch.nn.Dropout) for m in model.modules())
    interface = fast._uses_attention_interface(model.model)  # BERT, RoBERTa: attention probs via ours
    with torch.no_grad():
        model.eval()
        reference_eval = model(batch)
        model.train()
        torch.manual_seed(0)
        reference_train = model(batch)

        calls = []
        real_keep_mask = fast.keep_mask
        monkeypatch.setattr(fast, "keep_mask", lambda *a: calls.append(a) or real_keep_mask(*a))
        with fast.fast_dropout(model):
            assert model.packs  # packing stays exact with our attention function
            torch.manual_seed(0)
            first = model(batch)
            torch.manual_seed(0)
            again = model(batch)
            # one draw per nn.Dropout and forward: BERT's and RoBERTa's attention ones via the interface
            assert len(calls) == 2 * n_dropouts
            assert interface == (model.model.config._attn_implementation == fast.ATTENTION_NAME)
            model.eval()
            inside_eval = model(batch)
            model.train()
        torch.manual_seed(0)
        after_train = model(batch)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert not torch.allclose(first, reference_train)  # other masks than torch's
    torch.testing.assert_close(inside_eval, reference_eval, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(after_train, reference_train, atol=0, rtol=0)  # torch's dropout again
    assert model.model.config._attn_implementation == attn_before
    assert not any("forward" in vars(m) for m in model.modules())


def test_a_fit_with_fast_dropout_and_the_fused_optimizer(tiny_bert: Path) -> None:
    first, second = CORPUS[:9], CORPUS[3:12]
    labels = np.random.default_rng(0).uniform(0.0, 1.0, size=len(first)).astype(np.float32)

    def run(**options: bool) -> list[float]:
        model = BiEncoder.from_pretrained(tiny_bert, pooling="mean")
        model.packing = True
        fit = bi_fit_defaults(
            learning_rate=1e-3,
            batch_size=3,
            epochs=2,
            eval_steps=0,
            precision="fp32",
            packing=True,
            **options,
        )
        result = train_bi_encoder(model, first, second, labels, BiEncoderConfig(fit=fit))
        assert model.model.config._attn_implementation != fast.ATTENTION_NAME
        return result.losses

    both = run(fast_dropout=True, fused_optimizer=True)
    assert len(both) == 6 and np.all(np.isfinite(both))
    assert run(fast_dropout=True, fused_optimizer=True) == both  # seeded per step: the same fit again
    assert run() != both


def test_the_fused_optimizer_takes_the_same_step(tiny_bert: Path) -> None:
    steps = []
    for fused in (False, True):
        model = BiEncoder.from_pretrained(tiny_bert, pooling="mean")
        cfg = bi_fit_defaults(learning_rate=1e-3, batch_size=4, epochs=1, fused_optimizer=fused)
        optimizer = make_optimizer(model, cfg)
        assert bool(optimizer.defaults["fused"]) == fused
        model.eval()
        model(_batch(model)).pow(2).sum().backward()
        optimizer.step()
        steps.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(steps[1], steps[0], atol=1e-6, rtol=1e-5)
