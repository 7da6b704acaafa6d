"""Pseudo-labels: bi-encoder cosines and cross-encoder probabilities (algorithm.md §1.4 A and C).

Scoring encodes every unique sentence once, in length-sorted batches padded per batch, under
`torch.inference_mode()` (on a CPU several batches side by side, one per thread: `run_batches`), and
returns CPU float32 arrays aligned with the input rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from trans_encoder_core.batching import length_sorted_batches, tokenize_pairs, tokenize_texts, unique_index
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.runtime import autocast, eval_mode, resolve_precision, run_batches


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _check_aligned(first: Sequence[str], second: Sequence[str]) -> None:
    if len(first) != len(second):
        raise ValueError(
            f"Scoring expects two equally long sentence columns, got {len(first)} and {len(second)} rows."
        )


def encode(
    bi: BiEncoder, sentences: Sequence[str], *, batch_size: int = 128, precision: str = "fp32"
) -> np.ndarray:
    """Pooled embeddings (n, hidden) as float32, in input order (`precision` may be "auto")."""
    device = _device_of(bi)
    tokens = tokenize_texts(bi.tokenizer, sentences, bi.max_seq_length)
    out = np.empty((len(tokens), int(bi.model.config.hidden_size)), dtype=np.float32)

    def compute(idx: np.ndarray) -> None:
        out[idx] = bi(tokens.collate(idx, device)).float().cpu().numpy()

    with eval_mode(bi), torch.inference_mode(), autocast(resolve_precision(precision, device), device):
        run_batches(length_sorted_batches(tokens.lengths(), batch_size), compute, device, "encoding")
    return out


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two aligned embedding matrices, float32."""
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    num = np.einsum("ij,ij->i", a64, b64)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (num / np.maximum(den, 1e-12)).astype(np.float32)


def bi_scores(
    bi: BiEncoder,
    first: Sequence[str],
    second: Sequence[str],
    *,
    batch_size: int = 128,
    precision: str = "fp32",
) -> np.ndarray:
    """Cosine of each pair; each distinct sentence of both columns is encoded once."""
    _check_aligned(first, second)
    texts, index = unique_index(list(first) + list(second))
    emb = encode(bi, texts, batch_size=batch_size, precision=precision)
    n = len(first)
    return cosine_rows(emb[index[:n]], emb[index[n:]])


def position_limit(model: torch.nn.Module) -> int | None:
    """Longest input the model's position embeddings allow (RoBERTa-style offsets subtracted)."""
    config = model.config
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= int(config.pad_token_id or 0) + 1
    return int(limit)


def cross_logits(
    cross: CrossEncoder,
    first: Sequence[str],
    second: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """One logit per (first, second) pair, float32, in input order."""
    _check_aligned(first, second)
    device = _device_of(cross)
    length = max_length or cross.max_length
    limit = position_limit(cross.model)
    tokens = tokenize_pairs(cross.tokenizer, first, second, min(length, limit) if limit else length)
    out = np.empty(len(tokens), dtype=np.float32)

    def compute(idx: np.ndarray) -> None:
        out[idx] = cross(tokens.collate(idx, device)).float().cpu().numpy()

    with eval_mode(cross), torch.inference_mode(), autocast(resolve_precision(precision, device), device):
        run_batches(length_sorted_batches(tokens.lengths(), batch_size), compute, device, "scoring pairs")
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def cross_scores(
    cross: CrossEncoder,
    first: Sequence[str],
    second: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int | None = None,
    symmetric: bool = False,
    precision: str = "fp32",
) -> np.ndarray:
    """sigmoid(logit) per pair; `symmetric` averages the probabilities of both orders (off in the paper)."""
    kwargs = {"batch_size": batch_size, "max_length": max_length, "precision": precision}
    scores = sigmoid(cross_logits(cross, first, second, **kwargs))
    if symmetric:
        reverse = sigmoid(cross_logits(cross, second, first, **kwargs))
        scores = ((scores.astype(np.float64) + reverse) / 2).astype(np.float32)
    return scores
