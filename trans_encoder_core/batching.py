"""Tokenise once, in chunks, into int32 arrays; pad per batch (algorithm.md §6.2: no re-tokenising)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase


class Ragged(Sequence[np.ndarray]):
    """Rows of token ids stored as one flat int32 array and row offsets (about 4 bytes a token;
    Python lists of ints take 40 or more)."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        self.flat = flat
        self.offsets = offsets

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[int]]) -> Ragged:
        if isinstance(rows, Ragged):
            return rows
        rows = list(rows)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = (
            np.concatenate([np.asarray(r, dtype=np.int32) for r in rows]) if rows else np.zeros(0, np.int32)
        )
        return cls(flat.astype(np.int32, copy=False), offsets)

    @classmethod
    def concat(cls, parts: Sequence[Ragged]) -> Ragged:
        shifts = np.cumsum([0] + [len(p.flat) for p in parts[:-1]])
        offsets = np.concatenate([[0]] + [p.offsets[1:] + shift for p, shift in zip(parts, shifts)])
        return cls(np.concatenate([p.flat for p in parts]), offsets.astype(np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def __radd__(self, other: list) -> list:
        return list(other) + list(self)

    def __add__(self, other: Sequence[Sequence[int]]) -> list:
        return list(self) + list(other)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def gather(self, indices: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Values of rows `indices` at the True positions of `mask` (rows × longest), row-major."""
        starts = self.offsets[indices]
        return self.flat[(starts[:, None] + np.arange(mask.shape[1]))[mask]]


@dataclass(frozen=True)
class Tokenized:
    """Token ids of texts or text pairs, unpadded; `token_type_ids` only for models that use them.

    Rows may be given as lists; they are stored compactly (`Ragged`).
    """

    input_ids: Sequence[Sequence[int]]
    token_type_ids: Sequence[Sequence[int]] | None
    pad_id: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_ids", Ragged.from_rows(self.input_ids))
        if self.token_type_ids is not None:
            object.__setattr__(self, "token_type_ids", Ragged.from_rows(self.token_type_ids))

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return self.input_ids.lengths()

    def collate(self, indices: Sequence[int] | np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """Pad the selected rows to the longest of them (dynamic padding), without a Python loop per row."""
        idx = np.asarray(indices, dtype=np.int64)
        lengths = self.input_ids.lengths()[idx]
        mask = np.arange(int(lengths.max())) < lengths[:, None]
        ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
        ids[mask] = self.input_ids.gather(idx, mask)
        batch = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
        }
        if self.token_type_ids is not None:
            types = np.zeros(mask.shape, dtype=np.int64)
            types[mask] = self.token_type_ids.gather(idx, mask)
            batch["token_type_ids"] = torch.from_numpy(types)
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def _uses_token_types(tokenizer: PreTrainedTokenizerBase) -> bool:
    return "token_type_ids" in tokenizer.model_input_names


# Texts per tokenizer call: the fast tokenizer builds per-text objects (tokens, offsets, masks) for
# a whole call. Tokenising the pool's 54k pairs in both orders (64 tokens) raised the RSS by 454 MB
# in one call into Python lists, 117 MB in chunks of 4096 and 38 MB in chunks of 256 (int32 arrays).
_CHUNK = 256


def _tokenize(tokenizer: PreTrainedTokenizerBase, *columns: Sequence[str], **kwargs: object) -> Tokenized:
    types = _uses_token_types(tokenizer)
    ids, type_parts = [], []
    for start in range(0, len(columns[0]), _CHUNK):
        chunk = [list(c[start : start + _CHUNK]) for c in columns]
        enc = tokenizer(
            *chunk, padding=False, return_attention_mask=False, return_token_type_ids=types, **kwargs
        )
        ids.append(Ragged.from_rows(enc["input_ids"]))
        if types:
            type_parts.append(Ragged.from_rows(enc["token_type_ids"]))
    if not ids:
        return Tokenized([], [] if types else None, _pad_id(tokenizer))
    return Tokenized(Ragged.concat(ids), Ragged.concat(type_parts) if types else None, _pad_id(tokenizer))


def tokenize_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> Tokenized:
    """Tokenise single sentences, truncated to `max_length` tokens (special tokens included)."""
    return _tokenize(tokenizer, texts, truncation=True, max_length=max_length)


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase, first: Sequence[str], second: Sequence[str], max_length: int
) -> Tokenized:
    """Tokenise `tokenizer(s1, s2)` pairs, truncated together longest-first (algorithm.md §1.1)."""
    return _tokenize(tokenizer, first, second, truncation="longest_first", max_length=max_length)


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
