"""Unsupervised bi-encoder initialisation (SimCSE, Mirror-BERT): losses, span masking, the trainer,
the published defaults, and (slow) a short SimCSE pass that must not hurt the packaged model."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny import CORPUS, make_tiny_model
from trans_encoder_core.config import InitConfig, mirror_bert_defaults, simcse_defaults
from trans_encoder_core.encoders import BiEncoder
from trans_encoder_core.init import (
    distinct_sentences,
    in_batch_infonce,
    mask_span,
    nt_xent,
    train_contrastive,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SENTENCES = [*CORPUS, *(f"{a} while {b}" for a, b in zip(CORPUS, reversed(CORPUS), strict=True))]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def _xent(logits: np.ndarray, targets: np.ndarray) -> float:
    logits = logits - logits.max(1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return float(-log_probs[np.arange(len(targets)), targets].mean())


def test_in_batch_infonce_matches_a_numpy_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    expected = _xent(_cosines(a.numpy(), b.numpy()) / 0.05, np.arange(5))
    assert in_batch_infonce(a, b, 0.05).item() == pytest.approx(expected, rel=1e-5)


def test_nt_xent_matches_a_numpy_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    views = np.concatenate([a.numpy(), b.numpy()])
    logits = _cosines(views, views) / 0.04
    np.fill_diagonal(logits, -np.inf)
    expected = _xent(logits, np.array([4, 5, 6, 7, 0, 1, 2, 3]))
    assert nt_xent(a, b, 0.04).item() == pytest.approx(expected, rel=1e-5)


def test_losses_are_low_when_views_agree_and_high_when_they_do_not() -> None:
    views = torch.eye(6) * 3
    shuffled = views[torch.tensor([1, 2, 3, 4, 5, 0])]
    for loss in (in_batch_infonce, nt_xent):
        assert loss(views, views, 0.05).item() < 1e-3
        assert loss(views, shuffled, 0.05).item() > math.log(5)


def test_mask_span_replaces_a_random_span_of_characters() -> None:
    text = "a man is playing a large guitar on the porch"
    gen = torch.Generator().manual_seed(0)
    masked = mask_span(text, 5, "[MASK]", gen)
    assert "[MASK]" in masked and masked != text
    left, right = (part.strip() for part in masked.split("[MASK]"))
    assert len(left) + len(right) <= len(text) - 5 and text.startswith(left) and text.endswith(right)
    assert mask_span(text, 5, "[MASK]", torch.Generator().manual_seed(0)) == masked
    assert mask_span("too short to mask", 5, "[MASK]", gen) == "too short to mask"
    assert mask_span(text, 0, "[MASK]", gen) == text


def test_distinct_sentences_dedups_and_subsamples_reproducibly() -> None:
    texts = distinct_sentences(["a", "b", "a"], ["b", "c", "d"])
    assert texts == ["a", "b", "c", "d"]
    subset = distinct_sentences(SENTENCES, SENTENCES, limit=5, seed=3)
    assert len(subset) == 5 and subset == distinct_sentences(SENTENCES, SENTENCES, limit=5, seed=3)


def test_published_defaults() -> None:
    cfg = InitConfig()
    assert (cfg.simcse.temperature, cfg.simcse.fit.learning_rate, cfg.simcse.fit.batch_size) == (
        0.05,
        3e-5,
        64,
    )
    assert (cfg.simcse.max_seq_length, cfg.simcse.fit.epochs, cfg.simcse.span_mask) == (32, 1, 0)
    assert cfg.mirror_bert.loss == "nt_xent" and cfg.mirror_bert.temperature == 0.04
    assert (cfg.mirror_bert.span_mask, cfg.mirror_bert.fit.batch_size, cfg.mirror_bert.fit.learning_rate) == (
        5,
        200,
        2e-5,
    )
    assert cfg.recipe("mirror_bert") is cfg.mirror_bert
    with pytest.raises(ValueError, match="expects method 'simcse' or 'mirror_bert', got 'none'"):
        cfg.recipe("none")


def _epoch_means(losses: list[float], steps_per_epoch: int) -> np.ndarray:
    return np.asarray(losses).reshape(-1, steps_per_epoch).mean(1)


@pytest.fixture(scope="module", params=["bert", "roberta"])
def plain_tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random encoder with the default (narrow) init: every sentence starts at ~the same vector."""
    return make_tiny_model(request.param, tmp_path_factory.mktemp("plain") / request.param, seed=0)


@pytest.mark.parametrize("method", ["simcse", "mirror_bert"])
def test_contrastive_loss_decreases_on_a_tiny_model(method: str, plain_tiny: Path) -> None:
    base = simcse_defaults() if method == "simcse" else mirror_bert_defaults()
    fit = base.fit.model_copy(update={"learning_rate": 1e-2, "batch_size": 8, "epochs": 20, "seed": 5})
    bi = BiEncoder.from_pretrained(plain_tiny, pooling="cls")
    result = train_contrastive(bi, SENTENCES, base.model_copy(update={"fit": fit}))
    epochs = _epoch_means(result.losses, math.ceil(len(SENTENCES) / 8))
    assert result.steps == len(result.losses) == 20 * 3
    assert epochs[0] > math.log(8) and epochs[-3:].mean() < 0.6 * epochs[0], epochs.round(2)
    assert not bi.training


def test_contrastive_training_is_reproducible_and_resumable(tiny_bert: Path) -> None:
    cfg = mirror_bert_defaults(
        fit=mirror_bert_defaults().fit.model_copy(update={"batch_size": 8, "epochs": 2})
    )
    states = []
    first = BiEncoder.from_pretrained(tiny_bert, pooling="cls")
    full = train_contrastive(first, SENTENCES, cfg, checkpoint=lambda s: states.append(copy.deepcopy(s)))
    assert [s.global_step for s in states] == [3, 6]
    second = BiEncoder.from_pretrained(tiny_bert, pooling="cls")
    resumed = train_contrastive(second, SENTENCES, cfg, resume=states[0])
    assert resumed.steps == full.steps == 6
    assert resumed.losses == full.losses
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key


def test_contrastive_training_rejects_too_few_sentences(tiny_bert: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_bert, pooling="cls")
    with pytest.raises(ValueError, match="at least 2 distinct sentences"):
        train_contrastive(bi, ["only one", "only one"], simcse_defaults())


@pytest.mark.slow
def test_short_simcse_pass_keeps_the_packaged_model_on_stsb(data_root: Path) -> None:
    """1 epoch of SimCSE over 3,000 STS-B train sentences at lr 1e-5 costs at most 1 point on test."""
    from trans_encoder_core.benchmarks import load_stsb
    from trans_encoder_core.evaluation import bi_scorer, evaluate_scorer

    train, test = load_stsb(data_root, "train"), load_stsb(data_root, "test")
    sentences = distinct_sentences(train.sentence1, train.sentence2, limit=3000, seed=0)
    bi = BiEncoder.from_pretrained("packaged")
    before = evaluate_scorer(bi_scorer(bi), {"stsb": test})["stsb"]
    cfg = simcse_defaults(fit=simcse_defaults().fit.model_copy(update={"learning_rate": 1e-5}))
    result = train_contrastive(bi, sentences, cfg)
    after = evaluate_scorer(bi_scorer(bi), {"stsb": test})["stsb"]
    print(f"packaged STS-B test Spearman: {before:.2f} -> {after:.2f} after {result.steps} SimCSE steps")
    assert before == pytest.approx(81.80, abs=0.1)
    assert after >= before - 1.0 and result.steps == 47
