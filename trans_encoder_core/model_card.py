"""Model cards: the README.md of a saved bi- or cross-encoder folder, as the Hugging Face hub shows it.

The card has the YAML header sentence-transformers writes (library, pipeline tag, tags, base models)
and says what the model is, what it started from, the pairs it was trained on, the run's config, its
lineage in the store, its scores per set, and how to load it with sentence-transformers and with
plain transformers. `render_model_card` is a pure function of plain data and deterministic (no dates),
so a card written inside a cached stage gives the same bytes on every rerun.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["CARD_FILE", "ModelCardData", "load_snippets", "render_model_card", "write_model_card"]

CARD_FILE = "README.md"
PAPER = "https://arxiv.org/abs/2109.13059"
PACKAGED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# encoders.PACKAGED_MODEL_NAMES, repeated so that rendering a card never imports torch (a test checks).
PACKAGED_MODEL_NAMES = ("packaged", PACKAGED_HUB_ID, "all-MiniLM-L6-v2")
# Display names of the benchmark sets (trans_encoder_core.benchmarks task names); others are shown as is.
SET_NAMES = {
    "stsb_dev": "STS-B dev",
    "stsb": "STS-B test",
    "sts12": "STS12",
    "sts13": "STS13",
    "sts14": "STS14",
    "sts15": "STS15",
    "sts16": "STS16",
    "sickr": "SICK-R test",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_CITATION = """@inproceedings{liu2022transencoder,
  title     = {Trans-Encoder: Unsupervised sentence-pair modelling through self- and mutual-distillations},
  author    = {Liu, Fangyu and Jiao, Yunlong and Massiah, Jordan and Yilmaz, Emine and Havrylov, Serhii},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2022},
  url       = {https://arxiv.org/abs/2109.13059}
}"""


@dataclass(frozen=True)
class ModelCardData:
    """Everything a model card says, as plain data.

    Attributes:
        kind: "bi" (a sentence embedding model, cosine similarity) or "cross" (a pair scorer).
        base_models: The starting checkpoint(s): hub ids, folders or store URIs ("packaged" = the
            offline all-MiniLM-L6-v2). Hub ids also go into the YAML header's `base_model`.
        pool: One or two sentences on the unlabeled pairs it was trained on (source, size, digest).
        config: The run's config as JSON-able data (e.g. the flow config's `model_dump(mode="json")`).
        lineage: Store keys or URIs that produced the model, by name (e.g. {"train_bi": "stages/...",
            "pool": "sha256:...", "registry version": "3"}), in display order.
        metrics: Scores by set, then by metric, e.g. {"stsb_dev": {"spearman x100": 86.7}}; None = not
            measured. Set names in `SET_NAMES` are shown by their display names.
        model_id: The name in the load snippets (a hub repo id or a local path).
        pooling: The bi-encoder's pooling ("cls" or "mean"); None for a cross-encoder.
        max_length: Tokens per sentence (bi) or per pair (cross) the model was trained with.
        title: The card's heading (default: "Trans-Encoder bi-encoder" / "... cross-encoder").
        notes: Extra paragraphs shown after the description (e.g. how the model was selected).
        license: An SPDX id for the YAML header, or None to leave it out.
    """

    kind: Literal["bi", "cross"]
    base_models: Sequence[str]
    pool: str
    config: Mapping[str, Any]
    lineage: Mapping[str, str]
    metrics: Mapping[str, Mapping[str, float | None]]
    model_id: str = "path/to/this/folder"
    pooling: str | None = None
    max_length: int | None = None
    title: str | None = None
    notes: Sequence[str] = field(default_factory=tuple)
    license: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("bi", "cross"):
            raise ValueError(f"Model card expects kind 'bi' or 'cross', got {self.kind!r}.")
        if self.kind == "bi" and self.pooling not in ("cls", "mean"):
            raise ValueError(
                f"Model card of a bi-encoder expects pooling 'cls' or 'mean', got {self.pooling!r}."
            )


def hub_base_models(base_models: Sequence[str]) -> list[str]:
    """The base models that are hub ids (folders and store URIs are left out; "packaged" is mapped)."""
    found = []
    for name in base_models:
        name = PACKAGED_HUB_ID if name in PACKAGED_MODEL_NAMES else name
        if _HUB_ID.match(name) and name not in found:
            found.append(name)
    return found


def _yaml_header(card: ModelCardData) -> list[str]:
    """The YAML front matter; strings are JSON-quoted, which YAML reads as the same strings."""
    if card.kind == "bi":
        tag, tags = (
            "sentence-similarity",
            ["sentence-transformers", "sentence-similarity", "feature-extraction"],
        )
    else:
        tag, tags = "text-ranking", ["sentence-transformers", "cross-encoder", "text-ranking"]
    tags += ["trans-encoder", "unsupervised", "self-distillation"]
    lines = ["---", "library_name: sentence-transformers", f"pipeline_tag: {tag}", "tags:"]
    lines += [f"- {t}" for t in tags]
    bases = hub_base_models(card.base_models)
    if len(bases) == 1:
        lines.append(f"base_model: {json.dumps(bases[0])}")
    elif bases:
        lines += ["base_model:"] + [f"- {json.dumps(b)}" for b in bases]
    if card.license:
        lines.append(f"license: {json.dumps(card.license)}")
    return [*lines, "---"]


def load_snippets(
    kind: str, model_id: str, pooling: str | None = None, max_length: int | None = None
) -> dict[str, str]:
    """Python code that loads the model with sentence-transformers and with plain transformers.

    The transformers code truncates at `max_length` tokens when given, as sentence-transformers does
    with the folder's settings, so both print the same scores.
    """
    name = json.dumps(model_id)
    limit = f", max_length={max_length}" if max_length is not None else ""
    if kind == "bi":
        st = (
            "from sentence_transformers import SentenceTransformer\n\n"
            f"model = SentenceTransformer({name})\n"
            'embeddings = model.encode(["A man is playing a guitar.", "Someone plays an instrument."])\n'
            "print(model.similarity(embeddings[:1], embeddings[1:]))  # cosine similarity"
        )
        pool = (
            "vectors = out.last_hidden_state[:, 0]  # CLS pooling"
            if pooling == "cls"
            else "mask = batch['attention_mask'].unsqueeze(-1).float()\n"
            "vectors = (out.last_hidden_state * mask).sum(1) / mask.sum(1)  # mean pooling"
        )
        hf = (
            "import torch\nfrom transformers import AutoModel, AutoTokenizer\n\n"
            f"tokenizer = AutoTokenizer.from_pretrained({name})\n"
            f"model = AutoModel.from_pretrained({name}).eval()\n"
            'sentences = ["A man is playing a guitar.", "Someone plays an instrument."]\n'
            f'batch = tokenizer(sentences, padding=True, truncation=True{limit}, return_tensors="pt")\n'
            "with torch.no_grad():\n    out = model(**batch)\n"
            f"{pool}\n"
            "print(torch.nn.functional.cosine_similarity(vectors[0], vectors[1], dim=0))"
        )
    else:
        st = (
            "from sentence_transformers import CrossEncoder\n\n"
            f"model = CrossEncoder({name})\n"
            'scores = model.predict([("A man is playing a guitar.", "Someone plays an instrument.")])\n'
            "print(scores)  # in [0, 1]"
        )
        hf = (
            "import torch\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            f"tokenizer = AutoTokenizer.from_pretrained({name})\n"
            f"model = AutoModelForSequenceClassification.from_pretrained({name}).eval()\n"
            'batch = tokenizer(["A man is playing a guitar."], ["Someone plays an instrument."],\n'
            f'                  padding=True, truncation=True{limit}, return_tensors="pt")\n'
            "with torch.no_grad():\n    print(torch.sigmoid(model(**batch).logits.squeeze(-1)))  # in [0, 1]"
        )
    return {"sentence-transformers": st, "transformers": hf}


def _value(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _metrics_table(metrics: Mapping[str, Mapping[str, float | None]]) -> list[str]:
    if not metrics:
        return ["No scores were measured for this model (the run had no benchmark data)."]
    rows = ["| set | metric | value |", "|---|---|---:|"]
    for set_name, values in metrics.items():
        for metric, value in values.items():
            rows.append(f"| {SET_NAMES.get(set_name, set_name)} | {metric} | {_value(value)} |")
    return rows


def _description(card: ModelCardData) -> str:
    what = (
        "a sentence embedding model (bi-encoder): it encodes each sentence on its own and scores a pair "
        "by the cosine of the two vectors"
        if card.kind == "bi"
        else "a pair scorer (cross-encoder): it reads both sentences together and outputs one similarity "
        "score in [0, 1] (sigmoid of one logit)"
    )
    return (
        f"This is {what}. It was trained without any labels by Trans-Encoder self-distillation "
        f"([Liu et al., ICLR 2022]({PAPER})): a bi-encoder and a cross-encoder take turns labelling "
        "unlabeled sentence pairs for each other, and each learns from the other's scores."
    )


def render_model_card(card: ModelCardData) -> str:
    """The card as markdown with a YAML header (deterministic: the same data gives the same text)."""
    title = card.title or f"Trans-Encoder {'bi' if card.kind == 'bi' else 'cross'}-encoder"
    details = ["| | |", "|---|---|", f"| kind | {card.kind}-encoder |"]
    details.append(f"| starting model(s) | {', '.join(f'`{b}`' for b in card.base_models) or '–'} |")
    if card.kind == "bi":
        details.append(f"| pooling | {card.pooling} |")
        details.append("| similarity | cosine |")
    else:
        details.append("| output | sigmoid(logit), in [0, 1] |")
    if card.max_length is not None:
        unit = "sentence" if card.kind == "bi" else "pair"
        details.append(f"| max tokens per {unit} | {card.max_length} |")
    lineage = ["| step | store key |", "|---|---|"] + [f"| {k} | `{v}` |" for k, v in card.lineage.items()]
    snippets = load_snippets(card.kind, card.model_id, card.pooling, card.max_length)
    parts = [
        "\n".join(_yaml_header(card)),
        f"# {title}",
        _description(card),
        *card.notes,
        "## Model details",
        "\n".join(details),
        "## Training pairs",
        card.pool,
        "## Scores",
        "Spearman correlation x100 between the model's scores and the gold similarity of each set.",
        "\n".join(_metrics_table(card.metrics)),
        "## Usage",
        "With [sentence-transformers](https://www.sbert.net):",
        f"```python\n{snippets['sentence-transformers']}\n```",
        "With plain [transformers](https://huggingface.co/docs/transformers):",
        f"```python\n{snippets['transformers']}\n```",
        "## Lineage",
        "The artifacts in the trans-encoder store that produced this model (stage keys hash the code "
        "version, the config and the content digests of the inputs).",
        "\n".join(lineage) if card.lineage else "Not recorded.",
        "## Training configuration",
        f"```json\n{json.dumps(card.config, indent=2, sort_keys=True, default=str)}\n```",
        "## Citation",
        f"```bibtex\n{_CITATION}\n```",
    ]
    return "\n\n".join(parts) + "\n"


def write_model_card(folder: str | Path, card: ModelCardData) -> Path:
    """Write (or replace) `folder/README.md` with the card; returns its path."""
    path = Path(folder) / CARD_FILE
    path.write_text(render_model_card(card), encoding="utf-8")
    return path
