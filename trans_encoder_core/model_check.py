"""Cheap up-front checks of a starting model, before any stage spends time on it.

`check_model` reads what a load would read first and fails with one line naming the file: the
config (`config.json`), the tokenizer files, every safetensors weight file's header (a truncated or
damaged file fails here, without reading the weights), and for a cross-encoder a head with one
output or none. Hub names are not checked here (loading them downloads them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from trans_encoder_core.errors import ModelLoadError

__all__ = ["check_model", "check_weight_files"]

SHARD_INDEX = "model.safetensors.index.json"


def check_weight_files(folder: str | Path) -> None:
    """Raise `ModelLoadError` naming the first safetensors file of `folder` that cannot be read.

    Reads each file's header (its tensor names, shapes and offsets) and checks that the file is as
    long as the header says; the weights themselves are not loaded.
    """
    from safetensors import safe_open

    path = Path(folder)
    index = path / SHARD_INDEX
    names = sorted(p.name for p in path.glob("*.safetensors"))
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(
                f"Model loader expects a JSON shard index with a weight_map in {index}, got an unreadable "
                f"file ({exc}); copy or download the model again."
            ) from None
        missing = [s for s in shards if s not in names]
        if missing:
            raise ModelLoadError(
                f"Model loader expects the weight shards {missing} listed in {index}, which are missing; "
                "copy or download the model again."
            )
    for name in names:
        try:
            with safe_open(str(path / name), framework="pt") as fh:
                fh.keys()
        except Exception as exc:  # noqa: BLE001 - SafetensorError and OS errors alike
            raise ModelLoadError(
                f"Model loader expects readable safetensors weights in {path / name}, got a file that "
                f"cannot be read ({exc}); it is truncated or damaged: copy or download the model again."
            ) from None


def check_model(name_or_path: str | Path, kind: Literal["bi", "cross"]) -> str:
    """Check a starting model without loading it; return the reference `from_pretrained` gets.

    Raises:
        ModelLoadError: The path does not exist, or its config, tokenizer files or weight files
            cannot be read, or (cross) it has a classification head with more than one output.
    """
    from transformers import AutoConfig

    from trans_encoder_core.encoders import (
        _check_single_output,
        _load_error,
        _load_tokenizer,
        resolve_model,
    )

    ref = resolve_model(name_or_path)
    folder = Path(ref)
    if not folder.is_dir():
        return ref  # a hub name: checked when it is downloaded
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"Model loader expects a config.json in '{ref}', found none; pass a Hugging Face model folder "
            "(save_pretrained writes one)."
        )
    try:
        AutoConfig.from_pretrained(ref)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"Model loader expects a readable config in {folder / 'config.json'}, got: {exc}; fix or "
            "replace that file."
        ) from None
    _load_tokenizer(ref, trust_remote_code=False)
    if not list(folder.glob("*.safetensors")):
        raise _load_error("an encoder", ref, FileNotFoundError("no weights"))
    check_weight_files(folder)
    if kind == "cross":
        _check_single_output(ref, trust_remote_code=False)
    return ref
