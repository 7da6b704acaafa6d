"""Model cards (trans_encoder_core.model_card): the YAML header, the sections, and load code that runs."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from trans_encoder_core.model_card import (
    CARD_FILE,
    PACKAGED_MODEL_NAMES,
    ModelCardData,
    hub_base_models,
    load_snippets,
    render_model_card,
    write_model_card,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")
CONFIG = {"cycles": 2, "bi": {"model": "packaged", "fit": {"learning_rate": 5e-5}}, "run_name": "r1"}
METRICS = {
    "stsb_dev": {"spearman x100": 86.671},
    "sts12": {"spearman x100": 72.5},
    "sickr": {"spearman x100": None},
}


def _card(**overrides: Any) -> ModelCardData:
    values: dict[str, Any] = {
        "kind": "bi",
        "base_models": ["packaged", "/home/me/models/simcse"],
        "pool": "8,567 unlabeled pairs from STS-B (pool sha256 0123abcd).",
        "config": CONFIG,
        "lineage": {"train_bi": "stages/train_bi/aaa111", "cross_scores": "stages/cross_scores/bbb222"},
        "metrics": METRICS,
        "pooling": "mean",
        "max_length": 32,
        "model_id": "me/te-bi",
    }
    return ModelCardData(**{**values, **overrides})


def _front_matter(text: str) -> dict[str, Any]:
    assert text.startswith("---\n")
    header, _ = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header)


def test_bi_card_header_is_what_sentence_transformers_writes() -> None:
    header = _front_matter(render_model_card(_card()))
    assert header["library_name"] == "sentence-transformers"
    assert header["pipeline_tag"] == "sentence-similarity"
    assert {"sentence-transformers", "sentence-similarity", "trans-encoder"} <= set(header["tags"])
    assert header["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"  # the folder is not a hub id
    assert "license" not in header


def test_cross_card_header_lists_several_base_models_and_license() -> None:
    card = _card(kind="cross", pooling=None, base_models=["bert-base-uncased", "roberta-base"], license="mit")
    header = _front_matter(render_model_card(card))
    assert header["pipeline_tag"] == "text-ranking" and "cross-encoder" in header["tags"]
    assert header["base_model"] == ["bert-base-uncased", "roberta-base"] and header["license"] == "mit"


def test_card_sections_carry_the_data() -> None:
    text = render_model_card(_card(notes=["Selected on STS-B dev among 2 cycles."]))
    for heading in ("# Trans-Encoder bi-encoder", "## Model details", "## Training pairs", "## Scores"):
        assert f"\n{heading}\n" in text
    for heading in ("## Usage", "## Lineage", "## Training configuration", "## Citation"):
        assert f"\n{heading}\n" in text
    assert "`packaged`, `/home/me/models/simcse`" in text and "| pooling | mean |" in text
    assert "8,567 unlabeled pairs" in text and "Selected on STS-B dev among 2 cycles." in text
    assert "| STS-B dev | spearman x100 | 86.67 |" in text and "| STS12 | spearman x100 | 72.50 |" in text
    assert "| SICK-R test | spearman x100 | – |" in text
    assert "| train_bi | `stages/train_bi/aaa111` |" in text
    config_block = text.split("## Training configuration\n\n```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(config_block) == CONFIG
    assert "arxiv.org/abs/2109.13059" in text


def test_card_is_deterministic_and_follows_its_data() -> None:
    assert render_model_card(_card()) == render_model_card(_card())
    changed = render_model_card(_card(metrics={"stsb_dev": {"spearman x100": 80.0}}))
    assert changed != render_model_card(_card()) and "80.00" in changed
    empty = render_model_card(_card(metrics={}, lineage={}))
    assert "No scores were measured" in empty and "Not recorded." in empty


def test_invalid_card_data_is_rejected() -> None:
    with pytest.raises(ValueError, match="kind 'bi' or 'cross', got 'tri'"):
        _card(kind="tri")
    with pytest.raises(ValueError, match="pooling 'cls' or 'mean', got None"):
        _card(pooling=None)


def test_hub_base_models_and_packaged_names_match_the_encoders() -> None:
    from trans_encoder_core.encoders import PACKAGED_MODEL_NAMES as ENCODER_NAMES

    assert PACKAGED_MODEL_NAMES == ENCODER_NAMES
    refs = ["packaged", "org/model", "bert-base-uncased", "/abs/folder", "s3://b/k", "./rel", "org/model"]
    assert hub_base_models(refs) == [
        "sentence-transformers/all-MiniLM-L6-v2",
        "org/model",
        "bert-base-uncased",
    ]


def test_rendering_imports_no_torch() -> None:
    code = "import sys, trans_encoder_core.model_card as m; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_write_model_card_replaces_the_readme(tmp_path: Path) -> None:
    (tmp_path / CARD_FILE).write_text("old")
    path = write_model_card(tmp_path, _card())
    assert path == tmp_path / CARD_FILE and path.read_text(encoding="utf-8") == render_model_card(_card())


def _run(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "<card snippet>", "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_bi_snippets_run_and_agree(tiny_bert: Path, tmp_path: Path, pooling: str) -> None:
    from trans_encoder_core.encoders import BiEncoder

    folder = BiEncoder.from_pretrained(tiny_bert, pooling=pooling, max_seq_length=8).save(tmp_path / "bi")
    snippets = load_snippets("bi", str(folder), pooling, 8)
    st = _run(snippets["sentence-transformers"])["embeddings"]
    hf = _run(snippets["transformers"])["vectors"].numpy()
    np.testing.assert_allclose(hf, st, atol=1e-5)


def test_cross_snippets_run_and_agree(tiny_cross_model: Path, tmp_path: Path) -> None:
    from trans_encoder_core.encoders import CrossEncoder

    folder = CrossEncoder.from_pretrained(tiny_cross_model, max_length=12).save(tmp_path / "cross")
    snippets = load_snippets("cross", str(folder), None, 12)
    st = _run(snippets["sentence-transformers"])["scores"]
    code = snippets["transformers"].replace("    print(torch.sigmoid(", "    result = (torch.sigmoid(")
    hf = _run(code)["result"].numpy()
    assert 0 <= float(st[0]) <= 1
    np.testing.assert_allclose(hf, st, atol=1e-5)
