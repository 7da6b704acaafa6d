"""Step shards (`FitConfig.step_shards`): a batch computed as parts side by side on CPU threads.

The update must be the unsharded one up to float rounding (with dropout off), a sharded fit must be
reproducible to the bit whatever the thread timing (with dropout on: each shard has its own
generator), and the option must refuse what it cannot do.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny import CORPUS
from trans_encoder_core.batching import tokenize_texts
from trans_encoder_core.config import (
    BiEncoderConfig,
    CrossEncoderConfig,
    FitConfig,
    bi_fit_defaults,
    cross_fit_defaults,
)
from trans_encoder_core.distillation import train_bi_encoder, train_cross_encoder
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.losses import cosine_mse
from trans_encoder_core.training import fit, shard_indices, shard_seed, sharded_gradients

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_shards_are_contiguous_non_empty_and_cover_the_batch() -> None:
    idx = np.array([7, 3, 9, 1, 4])
    parts = shard_indices(idx, 2)
    assert [p.tolist() for p in parts] == [[7, 3, 9], [1, 4]]
    assert [p.tolist() for p in shard_indices(idx[:1], 4)] == [[7]]  # never an empty shard
    assert [p.tolist() for p in shard_indices(idx, 1)] == [idx.tolist()]
    assert len({shard_seed(5, i) for i in range(4)} | {shard_seed(6, 0)}) == 5


def test_step_shards_need_fast_dropout_and_stay_out_of_keys_when_off() -> None:
    base = {"learning_rate": 1e-3, "batch_size": 4, "epochs": 1}
    with pytest.raises(ValueError, match="step_shards=2 needs fast_dropout=true"):
        FitConfig(**base, step_shards=2)
    assert "step_shards" not in FitConfig(**base).model_dump()  # earlier runs' stage keys stay valid
    assert FitConfig(**base, step_shards=2, fast_dropout=True).model_dump()["step_shards"] == 2


def test_a_fit_whose_loss_does_not_split_refuses_shards() -> None:
    module = torch.nn.Linear(2, 1)
    cfg = FitConfig(learning_rate=1e-3, batch_size=2, epochs=1, step_shards=2, fast_dropout=True)
    with pytest.raises(ValueError, match="does not split"):
        fit(module, 4, lambda idx: module(torch.ones(len(idx), 2)).sum(), cfg)


def _no_dropout(module: torch.nn.Module) -> torch.nn.Module:
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return module


def _fit(kind: str, folder: Path, shards: int, *, dropout: bool):
    """Six steps of a distillation fit (bi: 12 pairs, batch 4; cross: both orders, batch 8)."""
    rng = np.random.default_rng(0)
    first, second = CORPUS[:12], CORPUS[3:12] + CORPUS[:3]
    labels = rng.uniform(0.0, 1.0, size=12).astype(np.float32)
    options = {"fast_dropout": True, "step_shards": shards, "precision": "fp32", "eval_steps": 0}
    torch.manual_seed(0)  # the cross head's init
    if kind == "bi":
        module = BiEncoder.from_pretrained(folder, pooling="mean", max_seq_length=16)
        cfg = BiEncoderConfig(fit=bi_fit_defaults(learning_rate=1e-3, batch_size=4, epochs=2, **options))
        train = train_bi_encoder
    else:
        module = CrossEncoder.from_pretrained(folder, max_length=32)
        cfg = CrossEncoderConfig(
            fit=cross_fit_defaults(learning_rate=1e-3, batch_size=8, epochs=2, **options)
        )
        train = train_cross_encoder
    if not dropout:
        _no_dropout(module)
    result = train(module, first, second, labels, cfg)
    return result, {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("kind", ["bi", "cross"])
def test_sharded_steps_equal_whole_steps_up_to_rounding(tiny_model: Path, kind: str) -> None:
    whole, whole_weights = _fit(kind, tiny_model, 1, dropout=False)
    sharded, sharded_weights = _fit(kind, tiny_model, 2, dropout=False)
    assert sharded.steps == whole.steps == 6
    np.testing.assert_allclose(sharded.losses, whole.losses, rtol=1e-5, atol=1e-7)
    # AdamW normalises each update, so rounding in near-zero gradients moves weights by up to ~lr x 1e-2
    for name, value in sharded_weights.items():
        torch.testing.assert_close(value, whole_weights[name], rtol=1e-4, atol=5e-5)


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_gradients_equal_the_whole_batch_gradient(tiny_bert: Path, shards: int) -> None:
    bi = _no_dropout(BiEncoder.from_pretrained(tiny_bert, pooling="mean", max_seq_length=16))
    tokens = tokenize_texts(bi.tokenizer, CORPUS, 16)
    targets = torch.linspace(0.0, 1.0, 6)
    cpu = torch.device("cpu")

    def step_loss(idx: np.ndarray) -> torch.Tensor:
        emb = bi(tokens.collate(np.concatenate([idx, (idx + 6) % 12]), cpu))
        return cosine_mse(emb[: len(idx)], emb[len(idx) :], targets[idx])

    idx = np.arange(6)
    step_loss(idx).backward()
    whole = {n: p.grad.clone() for n, p in bi.named_parameters() if p.grad is not None}
    bi.zero_grad(set_to_none=True)
    with ThreadPoolExecutor(shards) as pool:
        loss = sharded_gradients(bi, step_loss, idx, shards=shards, seed=1, precision="fp32", pool=pool)
    got = {n: p.grad for n, p in bi.named_parameters() if p.grad is not None}
    assert got.keys() == whole.keys() and len(got) > 10
    scale = max(float(g.abs().max()) for g in whole.values())
    for name, grad in got.items():
        torch.testing.assert_close(grad, whole[name], rtol=1e-4, atol=1e-5 * scale, msg=name)
    torch.testing.assert_close(loss, step_loss(idx).detach(), rtol=1e-5, atol=0.0)


@pytest.mark.parametrize("kind", ["bi", "cross"])
def test_sharded_fits_with_dropout_are_reproducible(tiny_model: Path, kind: str) -> None:
    threads = torch.get_num_threads()
    first, first_weights = _fit(kind, tiny_model, 2, dropout=True)
    assert torch.get_num_threads() == threads  # the workers' one-thread setting does not leak
    again, again_weights = _fit(kind, tiny_model, 2, dropout=True)
    assert first.losses == again.losses
    for name, value in again_weights.items():
        assert torch.equal(value, first_weights[name]), name
    plain, _ = _fit(kind, tiny_model, 2, dropout=False)
    assert first.losses[0] != plain.losses[0]  # dropout was on (same weights and batch at step 1)
