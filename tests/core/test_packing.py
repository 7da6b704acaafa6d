"""Padding-free batches (trans_encoder_core.packing): packed rows compute what padded batches compute.

Embeddings, cross logits, both distillation losses and their gradients, and a whole fit's loss
curve are compared between the packed and the padded path on tiny BERT, RoBERTa and MPNet models
(dropout off: with dropout the two paths draw different masks); the row plan and the packed inputs
are checked directly; an architecture whose positions do not come from `position_ids` stays padded.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import DistilBertConfig, DistilBertModel

from tests.conftest import make_tiny_cross
from tests.tiny import CORPUS
from trans_encoder_core.batching import Ragged, Tokenized, tokenize_pairs, tokenize_texts
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig, bi_fit_defaults, cross_fit_defaults
from trans_encoder_core.distillation import train_bi_encoder, train_cross_encoder
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.losses import cosine_mse, soft_bce_with_logits
from trans_encoder_core.packing import encoder_hidden, pack_batch, packing_support, plan_rows

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module", params=["bert", "roberta", "mpnet"])
def tiny_model(request: pytest.FixtureRequest, tiny_bert: Path, tiny_roberta: Path, tiny_mpnet: Path) -> Path:
    """Here MPNet too: its relative position bias must survive packing."""
    return {"bert": tiny_bert, "roberta": tiny_roberta, "mpnet": tiny_mpnet}[request.param]


@pytest.fixture(scope="module")
def tiny_cross_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_cross(tiny_model, tmp_path_factory.mktemp("tiny_cross") / "model")


CPU = torch.device("cpu")
LONG = "a man is playing a guitar while a woman is slicing an onion and two dogs run in the park"
TEXTS = [*CORPUS, "a", "zebra quokka", LONG]
FIRST = [*CORPUS[:7], LONG, "a"]
SECOND = [*CORPUS[5:12], "a", LONG]


def _no_dropout(module: torch.nn.Module) -> None:
    for sub in module.modules():
        if isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0


def _with_token_types(tokenizer) -> None:
    """The tiny BERT tokenizer does not list token_type_ids; real BERT ones do (pairs use type 1)."""
    if tokenizer.model_input_names[0] == "input_ids" and "[CLS]" in tokenizer.get_vocab():
        tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]


def _both(encoder: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    encoder.packing = False
    padded = encoder(batch)
    encoder.packing = True
    assert encoder.packs
    return padded, encoder(batch)


# --- the row plan and the packed inputs -------------------------------------------------------------------


def test_plan_rows_places_every_sequence_once_within_its_row() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 33, size=200)
    row, offset, capacity = plan_rows(lengths, 64)
    assert capacity == 64
    for r in np.unique(row):
        members = np.flatnonzero(row == r)
        spans = sorted((offset[i], offset[i] + lengths[i]) for i in members)
        assert spans[-1][1] <= capacity
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no overlap
    assert (int(row.max()) + 1) * capacity < 1.1 * lengths.sum() + capacity  # first-fit decreasing is tight
    again = plan_rows(lengths, 64)
    assert np.array_equal(again[0], row) and np.array_equal(again[1], offset)
    assert plan_rows(np.array([100, 3]), 64)[2] == 100  # a row always holds the longest sequence


def test_packed_inputs_restart_positions_and_mask_other_sequences(tiny_model: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_model, max_seq_length=32)
    tokens = tokenize_texts(bi.tokenizer, TEXTS, 32)
    batch = tokens.collate(np.arange(len(tokens)), CPU)
    packed = pack_batch(batch, bi.model, row_tokens=16, max_fraction=10.0)
    assert packed is not None
    lengths = tokens.lengths()
    base = 0 if bi.model.config.model_type == "bert" else bi.model.config.pad_token_id + 1
    row, offset, capacity = plan_rows(lengths, 16)
    mask = packed.inputs["attention_mask"]
    for i, n in enumerate(lengths):
        span = slice(offset[i], offset[i] + n)
        ids = packed.inputs["input_ids"][row[i], span]
        assert ids.tolist() == list(tokens.input_ids[i])
        assert packed.inputs["position_ids"][row[i], span].tolist() == list(range(base, base + n))
        block = mask[row[i], 0, span] if mask.dtype == torch.bool else mask[row[i], 0, span] == 0
        assert block[:, span].all() and int(block.sum()) == n * n  # itself, nothing else
    assert torch.equal(
        packed.unpack(packed.inputs["input_ids"].unsqueeze(-1)).squeeze(-1),
        batch["input_ids"] * batch["attention_mask"],
    )


def test_sorted_batches_stay_padded(tiny_bert: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_bert, max_seq_length=32)
    tokens = tokenize_texts(bi.tokenizer, CORPUS[:4] * 8, 32)
    order = np.argsort(tokens.lengths())
    batch = tokens.collate(order[:8], CPU)  # near-equal lengths: packing saves nothing
    assert pack_batch(batch, bi.model) is None


# --- packed = padded --------------------------------------------------------------------------------------


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_packed_embeddings_equal_padded(tiny_model: Path, pooling: str, attn: str) -> None:
    bi = BiEncoder.from_pretrained(tiny_model, pooling=pooling, max_seq_length=32)
    if attn == "sdpa" and not bi.model._supports_sdpa:
        pytest.skip(f"{type(bi.model).__name__} has eager attention only")
    bi.model.config._attn_implementation = attn
    batch = tokenize_texts(bi.tokenizer, TEXTS, 32).collate(np.arange(len(TEXTS)), CPU)
    assert pack_batch(batch, bi.model) is not None
    with torch.no_grad():
        padded, packed = _both(bi, batch)
    assert padded.abs().mean() > 0.1
    torch.testing.assert_close(packed, padded, atol=2e-5, rtol=1e-5)


def test_packed_cross_logits_equal_padded(tiny_cross_model: Path) -> None:
    cross = CrossEncoder.from_pretrained(tiny_cross_model, max_length=48)
    _with_token_types(cross.tokenizer)
    batch = tokenize_pairs(cross.tokenizer, FIRST, SECOND, 48).collate(np.arange(len(FIRST)), CPU)
    if cross.model.config.model_type == "bert":
        assert int(batch["token_type_ids"].sum()) > 0  # second segments are type 1
    with torch.no_grad():
        padded, packed = _both(cross, batch)
    assert padded.std() > 0.05
    torch.testing.assert_close(packed, padded, atol=2e-5, rtol=1e-5)


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    return out


def _compare_grads(padded: dict[str, torch.Tensor], packed: dict[str, torch.Tensor]) -> None:
    assert padded.keys() == packed.keys() and len(padded) > 10
    for name, grad in padded.items():
        torch.testing.assert_close(packed[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_bi_loss_and_gradients_equal_padded(tiny_model: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_model, pooling="mean", max_seq_length=32)
    _no_dropout(bi)
    tokens = tokenize_texts(bi.tokenizer, FIRST + SECOND, 32)
    batch = tokens.collate(np.arange(len(tokens)), CPU)
    targets = torch.linspace(0.0, 1.0, len(FIRST))
    results = []
    for packing in (False, True):
        bi.packing = packing
        emb = bi(batch)
        loss = cosine_mse(emb[: len(FIRST)], emb[len(FIRST) :], targets)
        loss.backward()
        results.append((loss.detach(), _grads(bi)))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-6, rtol=1e-5)
    _compare_grads(results[0][1], results[1][1])


def test_cross_loss_and_gradients_equal_padded(tiny_cross_model: Path) -> None:
    cross = CrossEncoder.from_pretrained(tiny_cross_model, max_length=48)
    _with_token_types(cross.tokenizer)
    _no_dropout(cross)
    batch = tokenize_pairs(cross.tokenizer, FIRST, SECOND, 48).collate(np.arange(len(FIRST)), CPU)
    targets = torch.linspace(0.0, 1.0, len(FIRST))
    results = []
    for packing in (False, True):
        cross.packing = packing
        loss = soft_bce_with_logits(cross(batch), targets)
        loss.backward()
        results.append((loss.detach(), _grads(cross)))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-6, rtol=1e-5)
    _compare_grads(results[0][1], results[1][1])


@pytest.mark.parametrize("kind", ["bi", "cross"])
def test_a_packed_fit_follows_the_padded_loss_curve(tiny_model: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    first, second = TEXTS[:12], TEXTS[3:15]
    labels = rng.uniform(0.0, 1.0, size=len(first)).astype(np.float32)
    curves, finals = [], []
    for packing in (False, True):
        if kind == "bi":
            model = BiEncoder.from_pretrained(tiny_model, pooling="mean", max_seq_length=32)
            fit = bi_fit_defaults(learning_rate=1e-3, batch_size=4, epochs=2, eval_steps=0, precision="fp32")
            model.packing = packing
            _no_dropout(model)
            result = train_bi_encoder(model, first, second, labels, BiEncoderConfig(fit=fit))
        else:
            torch.manual_seed(0)  # the new head
            model = CrossEncoder.from_pretrained(tiny_model, max_length=48)
            fit = cross_fit_defaults(
                learning_rate=1e-3, batch_size=6, epochs=2, eval_steps=0, precision="fp32"
            )
            model.packing = packing
            _no_dropout(model)
            result = train_cross_encoder(
                model, first, second, labels, CrossEncoderConfig(max_length=48, fit=fit)
            )
        assert model.packs == packing
        curves.append(result.losses)
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert len(curves[0]) >= 6 and len(set(curves[0])) > 1
    np.testing.assert_allclose(curves[1], curves[0], atol=1e-5, rtol=1e-4)
    # Adam divides by the gradient's own scale, so rounding noise on near-zero gradients moves a few
    # weights by a fraction of the learning rate (1e-3 per step); a wrong path moves many by ~1e-3.
    torch.testing.assert_close(finals[1], finals[0], atol=2e-4, rtol=0)


# --- where packing is not exact ---------------------------------------------------------------------------


def test_distilbert_falls_back_to_padded_batches(tiny_bert: Path) -> None:
    """DistilBERT takes no position_ids (its positions are the row layout): packing would change them."""
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=400, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    bi = BiEncoder.from_pretrained(tiny_bert, max_seq_length=32)
    distil = BiEncoder(DistilBertModel(config).eval(), bi.tokenizer, pooling="mean", packing=True)
    assert "distilbert" in packing_support(distil.model)
    assert not distil.packs
    batch = tokenize_texts(bi.tokenizer, TEXTS, 32).collate(np.arange(len(TEXTS)), CPU)
    with torch.no_grad():
        expected = encoder_hidden(distil.model, batch, pack=False)
        got = distil(batch)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(got, (expected * mask).sum(1) / mask.sum(1))


def test_packing_support_names_the_reason() -> None:
    def fake(**kw: object) -> SimpleNamespace:
        values = {"model_type": "bert", "_attn_implementation": "sdpa", **kw}
        return SimpleNamespace(config=SimpleNamespace(**values))

    assert packing_support(fake()) is None
    assert "flash_attention_2" in packing_support(fake(_attn_implementation="flash_attention_2"))
    assert "decoder" in packing_support(fake(is_decoder=True))
    assert "relative_key" in packing_support(fake(position_embedding_type="relative_key"))
    assert "head" in packing_support(fake(), head=True)  # not a known classifier class


# --- compact token storage ---------------------------------------------------------------------------------


def test_compact_tokens_collate_as_lists_did(tiny_bert: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_bert, max_seq_length=32)
    _with_token_types(bi.tokenizer)
    enc = bi.tokenizer(FIRST, SECOND, truncation="longest_first", max_length=20)
    tokens = tokenize_pairs(bi.tokenizer, FIRST, SECOND, 20)
    assert isinstance(tokens.input_ids, Ragged)
    assert [list(r) for r in tokens.input_ids] == enc["input_ids"]
    assert [list(r) for r in tokens.token_type_ids] == enc["token_type_ids"]
    from_lists = Tokenized(enc["input_ids"], enc["token_type_ids"], tokens.pad_id)
    idx = np.array([3, 0, 7, 7])
    for key, value in tokens.collate(idx, CPU).items():
        assert torch.equal(value, from_lists.collate(idx, CPU)[key])
    rows = [tokens.input_ids[i] for i in idx[:2]]
    joined = Tokenized(rows + tokens.input_ids, None, tokens.pad_id)  # how init.py builds its views
    assert len(joined) == 2 + len(tokens)
    assert list(joined.input_ids[2]) == enc["input_ids"][0]
