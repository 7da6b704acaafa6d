"""Bi- and cross-encoders on tiny random BERT and RoBERTa (trans_encoder_core.encoders, algorithm.md §1.1).

Pooling is checked against a manual computation, saved folders against a reload, against
sentence-transformers and against plain `transformers`; load errors against their messages.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from tests.tiny import CORPUS
from trans_encoder_core.encoders import (
    META_FILE,
    BiEncoder,
    CrossEncoder,
    packaged_model_path,
    read_st_pooling,
    resolve_model,
)
from trans_encoder_core.errors import ModelLoadError
from trans_encoder_core.scoring import cross_logits, cross_scores, encode

# Different lengths (so batches are padded), an unknown word, and one sentence longer than the
# short max lengths used below (so truncation is exercised too).
pytestmark = pytest.mark.usefixtures("torch_single_thread")

SENTENCES = [
    *CORPUS[:6],
    "a",
    "zebra xylophone quokka",
    "a man is playing a guitar while a woman is slicing an onion and two dogs run in the park today",
]
FIRST = SENTENCES[:5] + [SENTENCES[-1]]
SECOND = SENTENCES[3:]


def _single_hidden(model: torch.nn.Module, tokenizer, text: str, max_length: int) -> torch.Tensor:
    """Last hidden state of one sentence, unpadded, shape (tokens, hidden)."""
    enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).last_hidden_state[0]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


# --- pooling ---------------------------------------------------------------------------------------------


def test_cls_pooling_is_first_token_before_pooler(tiny_model: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_model, pooling="cls", max_seq_length=16)
    got = encode(bi, SENTENCES, batch_size=4)
    ref = np.stack(
        [_single_hidden(bi.model, bi.tokenizer, s, 16)[0].numpy() for s in SENTENCES],
    )
    np.testing.assert_allclose(got, ref, atol=1e-5)
    if getattr(bi.model, "pooler", None) is not None:  # BERT: the vector is taken before the pooler MLP
        enc = bi.tokenizer(SENTENCES[0], return_tensors="pt")
        with torch.inference_mode():
            pooled = bi.model(**enc).pooler_output[0].numpy()
        assert not np.allclose(got[0], pooled, atol=1e-3)


def test_mean_pooling_is_attention_masked_mean(tiny_model: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_model, pooling="mean", max_seq_length=16)
    batch = bi.tokenizer(SENTENCES, truncation=True, max_length=16, padding=True, return_tensors="pt")
    mask = batch["attention_mask"]
    assert (mask == 0).any(), "the batch must contain padding for this test to mean anything"
    with torch.inference_mode():
        got = bi(dict(batch)).numpy()
        hidden = bi.model(**batch).last_hidden_state
    # Reference 1: each sentence alone, no padding at all, plain mean over its tokens.
    alone = np.stack([_single_hidden(bi.model, bi.tokenizer, s, 16).mean(0).numpy() for s in SENTENCES])
    np.testing.assert_allclose(got, alone, atol=1e-5)
    # Reference 2: the masked mean written out on the padded batch.
    m = mask.numpy()[..., None].astype(np.float64)
    manual = (hidden.numpy() * m).sum(1) / m.sum(1)
    np.testing.assert_allclose(got, manual, atol=1e-5)
    # An unmasked mean would differ on the padded rows.
    padded_rows = (mask == 0).any(1).numpy()
    assert not np.allclose(got[padded_rows], hidden.numpy().mean(1)[padded_rows], atol=1e-3)
    # And `encode` (length-sorted, per-batch padding) agrees with both.
    np.testing.assert_allclose(encode(bi, SENTENCES, batch_size=3), alone, atol=1e-5)


def test_loaded_encoders_are_in_eval_mode_and_scoring_keeps_it(tiny_bert: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_bert)
    cross = CrossEncoder.from_pretrained(tiny_bert)
    encode(bi, SENTENCES)
    cross_logits(cross, FIRST, SECOND)
    for module in (bi, cross):
        assert not any(m.training for m in module.modules())
    bi.train()
    encode(bi, SENTENCES)  # scoring runs in eval mode and restores the caller's mode
    assert all(m.training for m in bi.modules())


def test_invalid_pooling_is_rejected(tiny_bert: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_bert, pooling="cls")
    with pytest.raises(ValueError, match="pooling 'cls' or 'mean', got 'max'"):
        BiEncoder(bi.model, bi.tokenizer, pooling="max")


# --- save / load -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_bi_encoder_save_load_roundtrip(tiny_model: Path, tmp_path: Path, pooling: str) -> None:
    bi = BiEncoder.from_pretrained(tiny_model, pooling=pooling, max_seq_length=8)
    folder = bi.save(tmp_path / "bi")
    assert (folder / "model.safetensors").is_file()
    assert json.loads((folder / META_FILE).read_text())["kind"] == "bi"
    assert read_st_pooling(folder) == pooling
    again = BiEncoder.from_pretrained(folder, max_seq_length=8)  # pooling "auto" reads the saved config
    assert again.pooling == pooling
    np.testing.assert_allclose(encode(again, SENTENCES), encode(bi, SENTENCES), atol=1e-6, rtol=0)


def test_cross_encoder_save_load_roundtrip(tiny_cross_model: Path, tmp_path: Path) -> None:
    cross = CrossEncoder.from_pretrained(tiny_cross_model, max_length=16)
    folder = cross.save(tmp_path / "cross")
    assert json.loads((folder / META_FILE).read_text()) == {"kind": "cross", "max_length": 16}
    again = CrossEncoder.from_pretrained(folder, max_length=16)
    ref = cross_logits(cross, FIRST, SECOND)
    np.testing.assert_allclose(cross_logits(again, FIRST, SECOND), ref, atol=1e-6, rtol=0)
    assert np.ptp(ref) > 0.05, "the sharpened head must give distinguishable logits"
    # Saving must not change the in-memory tokenizer's own limit.
    assert (
        cross.tokenizer.model_max_length == AutoTokenizer.from_pretrained(tiny_cross_model).model_max_length
    )


def test_bi_encoder_loads_a_cross_encoder_folder_without_its_head(tiny_model: Path, tmp_path: Path) -> None:
    base = BiEncoder.from_pretrained(tiny_model, pooling="mean")
    cross_folder = CrossEncoder.from_pretrained(tiny_model).save(tmp_path / "cross")
    from_cross = BiEncoder.from_pretrained(cross_folder, pooling="mean")
    np.testing.assert_allclose(encode(from_cross, SENTENCES), encode(base, SENTENCES), atol=1e-6)


# --- interoperability ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_bi_folder_loads_in_sentence_transformers(tiny_model: Path, tmp_path: Path, pooling: str) -> None:
    from sentence_transformers import SentenceTransformer

    bi = BiEncoder.from_pretrained(tiny_model, pooling=pooling, max_seq_length=8)
    folder = bi.save(tmp_path / "bi")
    st = SentenceTransformer(str(folder), device="cpu")
    assert st.max_seq_length == 8
    theirs = st.encode(SENTENCES, batch_size=4, convert_to_numpy=True)
    ours = encode(bi, SENTENCES)
    assert theirs.shape == ours.shape
    assert _cosines(ours, theirs).min() >= 1 - 1e-5


def test_cross_folder_loads_in_sentence_transformers(tiny_cross_model: Path, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder as STCrossEncoder

    cross = CrossEncoder.from_pretrained(tiny_cross_model, max_length=12)
    folder = cross.save(tmp_path / "cross")  # the long pair is truncated at 12 tokens on both sides
    st = STCrossEncoder(str(folder), device="cpu")
    theirs = st.predict(list(zip(FIRST, SECOND, strict=True)), batch_size=4, convert_to_numpy=True)
    ours = cross_scores(cross, FIRST, SECOND)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)
    assert np.ptp(ours) > 0.01


def test_saved_folders_load_in_plain_transformers(tiny_cross_model: Path, tmp_path: Path) -> None:
    cross = CrossEncoder.from_pretrained(tiny_cross_model, max_length=64)
    bi = BiEncoder.from_pretrained(tiny_cross_model, pooling="cls", max_seq_length=64)
    bi_folder, cross_folder = bi.save(tmp_path / "bi"), cross.save(tmp_path / "cross")

    model = AutoModel.from_pretrained(bi_folder).eval()
    tok = AutoTokenizer.from_pretrained(bi_folder)
    batch = tok(SENTENCES, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        first_token = model(**batch).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(first_token, encode(bi, SENTENCES), atol=1e-5)

    head = AutoModelForSequenceClassification.from_pretrained(cross_folder).eval()
    assert head.config.num_labels == 1
    tok = AutoTokenizer.from_pretrained(cross_folder)
    pairs = tok(FIRST, SECOND, padding=True, truncation="longest_first", max_length=64, return_tensors="pt")
    with torch.inference_mode():
        logits = head(**pairs).logits.squeeze(-1).numpy()
    np.testing.assert_allclose(logits, cross_logits(cross, FIRST, SECOND), atol=1e-5, rtol=1e-4)


# --- model references and load errors -------------------------------------------------------------------


def test_resolve_model(tmp_path: Path) -> None:
    assert resolve_model("packaged") == str(packaged_model_path())
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == str(packaged_model_path())
    assert resolve_model(tmp_path) == str(tmp_path)
    # Hub names are left as is, including those with dots in them.
    for name in (
        "bert-base-uncased",
        "princeton-nlp/unsup-simcse-bert-base-uncased",
        "BAAI/bge-small-en-v1.5",
    ):
        assert resolve_model(name) == name
    # Anything path-like that does not exist is an error, not a hub lookup.
    for missing in ("./model", "~/no-such-model", str(tmp_path / "missing"), "runs/cycle-1/bi"):
        with pytest.raises(ModelLoadError, match="does not exist"):
            resolve_model(missing)


@pytest.mark.parametrize("loader", [BiEncoder.from_pretrained, CrossEncoder.from_pretrained])
def test_missing_model_path_is_a_model_load_error(tmp_path: Path, loader) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        loader(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError, match="does not exist"):
        loader("./no-such-model")


@pytest.mark.parametrize("loader", [BiEncoder.from_pretrained, CrossEncoder.from_pretrained])
def test_folder_without_tokenizer_is_a_model_load_error(tiny_bert: Path, tmp_path: Path, loader) -> None:
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert / name, folder / name)
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        loader(folder)


def test_cross_encoder_rejects_a_multi_output_head(tiny_bert: Path, tmp_path: Path) -> None:
    folder = tmp_path / "three-labels"
    AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    with pytest.raises(ModelLoadError, match="1 output, got 3 outputs"):
        CrossEncoder.from_pretrained(folder)
    # The encoder underneath is still usable as a bi-encoder (the head is dropped).
    assert BiEncoder.from_pretrained(folder).pooling == "cls"


# --- read_st_pooling ------------------------------------------------------------------------------------


def _st_folder(model_folder: Path, out: Path, mode: str) -> Path:
    """A folder written by sentence-transformers itself, with the given pooling mode."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformer = Transformer(str(model_folder))
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=mode)
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(out))
    return out


def _legacy_pooling_folder(out: Path, cls: bool, mean: bool, max_: bool = False) -> Path:
    """A sentence-transformers < 6 folder layout (boolean pooling_mode_* keys, as our save writes)."""
    (out / "1_Pooling").mkdir(parents=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (out / "modules.json").write_text(json.dumps(modules))
    cfg = {
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": cls,
        "pooling_mode_mean_tokens": mean,
        "pooling_mode_max_tokens": max_,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (out / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.parametrize("mode", ["cls", "mean"])
def test_read_st_pooling_on_a_sentence_transformers_folder(
    tiny_bert: Path, tmp_path: Path, mode: str
) -> None:
    folder = _st_folder(tiny_bert, tmp_path / mode, mode)
    assert read_st_pooling(folder) == mode
    assert BiEncoder.from_pretrained(folder).pooling == mode


def test_read_st_pooling_legacy_configs_and_absence(tiny_bert: Path, tmp_path: Path) -> None:
    assert read_st_pooling(_legacy_pooling_folder(tmp_path / "cls", cls=True, mean=False)) == "cls"
    assert read_st_pooling(_legacy_pooling_folder(tmp_path / "mean", cls=False, mean=True)) == "mean"
    assert read_st_pooling(tiny_bert) is None  # a plain Hugging Face folder: no modules.json
    assert BiEncoder.from_pretrained(tiny_bert).pooling == "cls"  # ... so "auto" means cls
    with pytest.raises(ModelLoadError, match="expects cls or mean pooling"):
        read_st_pooling(_legacy_pooling_folder(tmp_path / "max", cls=False, mean=False, max_=True))


def test_read_st_pooling_rejects_other_modes(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="expects cls or mean pooling"):
        read_st_pooling(_st_folder(tiny_bert, tmp_path / "max", "max"))
