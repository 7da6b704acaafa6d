"""Padded-token counts: the token positions each side feeds the model, independent of machine load.

Ours: distinct sentences (pairs for the cross-encoder) sorted by token length. Theirs, as
sentence-transformers 6 does it: each column encoded separately, sorted by character length (the sum
of both texts' characters for a pair). Training: the same batches on both sides; our bi step pads both
columns together (one forward), theirs each column on its own (two forwards).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from speed_common import BATCH, LENGTH


def padded(lengths: Any, batches: list[Any]) -> int:
    """Sum over batches of rows x the longest row: what a padded forward computes on."""
    return int(sum(len(idx) * int(lengths[idx].max()) for idx in batches if len(idx)))


def chunks(order: Any, batch_size: int) -> list[Any]:
    """Consecutive batches of `order` (the last one may be short)."""
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def work(ours: int, theirs: int, real: int) -> dict[str, Any]:
    """One measurement's entry: both sides' padded tokens, the real tokens, theirs over ours."""
    return {"ours": ours, "st": theirs, "real_tokens": real, "work_ratio": theirs / ours}


def bi_score_work(texts: list[str], index: Any, lengths: Any, n_a: int, batch_size: int) -> dict[str, Any]:
    """Bi scoring: ours encodes each distinct text once, theirs each column by character length.

    `texts` are the distinct sentences with token `lengths`; `index` maps the rows of both columns
    (the first `n_a` entries are column a) to them.
    """
    from trans_encoder_core.batching import length_sorted_batches

    ours = padded(lengths, length_sorted_batches(lengths, batch_size))
    theirs = 0
    for col in (index[:n_a], index[n_a:]):
        chars = np.array([len(texts[i]) for i in col])
        theirs += padded(lengths[col], chunks(np.argsort(-chars), batch_size))
    return work(ours, theirs, int(lengths[index].sum()))


def cross_score_work(a: list[str], b: list[str], lengths: Any, batch_size: int) -> dict[str, Any]:
    """Cross scoring: ours sorted by pair token length, theirs by the pair's characters."""
    from trans_encoder_core.batching import length_sorted_batches

    ours = padded(lengths, length_sorted_batches(lengths, batch_size))
    chars = np.array([len(x) + len(y) for x, y in zip(a, b)])
    theirs = padded(lengths, chunks(np.argsort(-chars), batch_size))
    return work(ours, theirs, int(lengths.sum()))


def train_bi_work(la: Any, lb: Any, steps: list[Any]) -> dict[str, Any]:
    """Bi training: ours pads both columns of a step together, theirs each column on its own."""
    ours = sum(2 * len(i) * int(max(la[i].max(), lb[i].max())) for i in steps)
    theirs = padded(la, steps) + padded(lb, steps)
    return work(ours, theirs, int(la.sum() + lb.sum()))


def padded_tokens(folders: dict[str, str], tables: dict[str, Any], sizes: dict[str, Any], seed: int) -> dict:
    """The padded-token counts of every measurement (see the module docstring)."""
    from transformers import AutoTokenizer

    from trans_encoder_core.batching import tokenize_pairs, tokenize_texts, unique_index
    from trans_encoder_core.distillation import cross_training_examples
    from trans_encoder_core.training import epoch_order

    tok = AutoTokenizer.from_pretrained(folders["bi"])
    out: dict[str, Any] = {}
    for name in ("pool", "unique"):
        a, b = tables[name]["a"], tables[name]["b"]
        texts, index = unique_index(a + b)
        lengths = tokenize_texts(tok, texts, LENGTH["bi"]).lengths()
        out[f"bi_{name}"] = bi_score_work(texts, index, lengths, len(a), BATCH["bi_score"])
    a, b = tables["cross"]["a"], tables["cross"]["b"]
    lengths = tokenize_pairs(tok, a, b, LENGTH["cross"]).lengths()
    out["cross"] = cross_score_work(a, b, lengths, BATCH["cross_score"])
    train = tables["train"]
    n = sizes["cross_steps"] * BATCH["train_cross"] // 2
    x, y, _ = cross_training_examples(
        train["a"][:n], train["b"][:n], np.zeros(n), both_orders=True, clamp=False
    )
    lengths = tokenize_pairs(tok, x, y, LENGTH["cross"]).lengths()
    same = padded(lengths, chunks(epoch_order(len(x), seed, 0), BATCH["train_cross"]))
    out["train_cross"] = {"ours": same, "st": same, "real_tokens": int(lengths.sum()), "work_ratio": 1.0}
    n = sizes["bi_steps"] * BATCH["train_bi"]
    la = tokenize_texts(tok, train["a"][:n], LENGTH["bi"]).lengths()
    lb = tokenize_texts(tok, train["b"][:n], LENGTH["bi"]).lengths()
    out["train_bi"] = train_bi_work(la, lb, chunks(epoch_order(n, seed, 0), BATCH["train_bi"]))
    return out
