"""Tokenise once, pad per batch (algorithm.md §6.2: no re-tokenising every epoch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Tokenized:
    """Token ids of texts or text pairs, unpadded; `token_type_ids` only for models that use them."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def collate(self, indices: Sequence[int] | np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """Pad the selected rows to the longest of them (dynamic padding), without a Python loop per row."""
        rows = [self.input_ids[i] for i in indices]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        mask = np.arange(int(lengths.max())) < lengths[:, None]
        ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
        ids[mask] = np.concatenate(rows)
        batch = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
        }
        if self.token_type_ids is not None:
            types = np.zeros(mask.shape, dtype=np.int64)
            types[mask] = np.concatenate([self.token_type_ids[i] for i in indices])
            batch["token_type_ids"] = torch.from_numpy(types)
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def _uses_token_types(tokenizer: PreTrainedTokenizerBase) -> bool:
    return "token_type_ids" in tokenizer.model_input_names


def tokenize_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> Tokenized:
    """Tokenise single sentences, truncated to `max_length` tokens (special tokens included)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    types = enc.get("token_type_ids") if _uses_token_types(tokenizer) else None
    return Tokenized(list(enc["input_ids"]), list(types) if types is not None else None, _pad_id(tokenizer))


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase, first: Sequence[str], second: Sequence[str], max_length: int
) -> Tokenized:
    """Tokenise `tokenizer(s1, s2)` pairs, truncated together longest-first (algorithm.md §1.1)."""
    enc = tokenizer(
        list(first), list(second), truncation="longest_first", max_length=max_length, padding=False
    )
    types = enc.get("token_type_ids") if _uses_token_types(tokenizer) else None
    return Tokenized(list(enc["input_ids"]), list(types) if types is not None else None, _pad_id(tokenizer))


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length, longest first (least padding at inference)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def unique_index(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Unique texts in first-seen order and, per input row, the index of its text among them."""
    position: dict[str, int] = {}
    index = np.empty(len(texts), dtype=np.int64)
    for row, text in enumerate(texts):
        index[row] = position.setdefault(text, len(position))
    return list(position), index
