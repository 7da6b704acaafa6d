"""Unsupervised bi-encoder initialisation: SimCSE and Mirror-BERT (paper §2.1; algorithm.md §1.2).

Both train a pretrained LM as a bi-encoder without labels, by contrasting two views of each sentence
against the other sentences of the batch (InfoNCE over cosine similarities divided by a temperature):

* SimCSE (Gao et al., 2021): the two views are two forward passes with independent dropout masks;
  each first view must pick its own second view among the B second views of the batch.
* Mirror-BERT (Liu et al., 2021): the second view also has a random span of characters replaced by
  the mask token; every one of the 2B views must pick its twin among the 2B - 1 others (NT-Xent).

The trainer reuses `training.fit`, so it has the same optimiser, schedule, dev selection and
checkpoint/resume behaviour as the distillation steps. Randomness (dropout, span positions) comes
from the global torch generator, which `fit` reseeds at every step, so a resumed fit is identical.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trans_encoder_core.batching import Tokenized, tokenize_texts
from trans_encoder_core.config import ContrastiveConfig
from trans_encoder_core.encoders import BiEncoder
from trans_encoder_core.training import Evaluate, TrainResult, fit

logger = logging.getLogger(__name__)

MIN_MASKED_CHARS = 30  # Mirror-BERT leaves shorter sentences unmasked


def _cosine_logits(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature


def in_batch_infonce(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCSE's loss: cross-entropy of each `first[i]` over cos(first[i], second[j]) / τ, target j = i."""
    logits = _cosine_logits(first, second, temperature)
    return F.cross_entropy(logits, torch.arange(len(first), device=logits.device))


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mirror-BERT's loss: each of the 2B views against the 2B - 1 others; its twin is the target."""
    views = torch.cat([first, second])
    logits = _cosine_logits(views, views, temperature)
    logits = logits.masked_fill(torch.eye(len(views), dtype=torch.bool, device=logits.device), -torch.inf)
    n = len(first)
    twins = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(logits.device)
    return F.cross_entropy(logits, twins)


LOSSES = {"in_batch": in_batch_infonce, "nt_xent": nt_xent}


def mask_span(text: str, span: int, mask_token: str, generator: torch.Generator | None = None) -> str:
    """Replace `span` characters at a uniformly random position with the mask token (Mirror-BERT).

    Sentences shorter than 30 characters (or than the span) are returned unchanged, as in Mirror-BERT.
    """
    if span <= 0 or len(text) < max(MIN_MASKED_CHARS, span + 1):
        return text
    start = int(torch.randint(0, len(text) - span, (1,), generator=generator))
    return f"{text[:start]} {mask_token} {text[start + span :]}"


def distinct_sentences(
    first: Sequence[str], second: Sequence[str], *, limit: int | None = None, seed: int = 0
) -> list[str]:
    """The distinct sentences of both pair columns in first-seen order, or a seeded subset of `limit`."""
    texts = list(dict.fromkeys([*first, *second]))
    if limit is not None and len(texts) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=limit, replace=False))
        texts = [texts[i] for i in keep]
    return texts


def _views(tokens: Tokenized, idx: np.ndarray, second: Tokenized | None) -> Tokenized:
    """One batch holding the first views (rows 0..B-1) and the second views (rows B..2B-1)."""
    rows = [tokens.input_ids[i] for i in idx]
    types = [tokens.token_type_ids[i] for i in idx] if tokens.token_type_ids is not None else None
    if second is None:  # SimCSE: the same tokens twice; dropout makes the views differ
        return Tokenized(rows + rows, types + types if types is not None else None, tokens.pad_id)
    other = second.token_type_ids
    return Tokenized(
        rows + second.input_ids,
        types + other if types is not None and other is not None else None,
        tokens.pad_id,
    )


def _check_inputs(texts: Sequence[str], cfg: ContrastiveConfig, bi: BiEncoder) -> None:
    if len(texts) < 2:
        raise ValueError(
            f"Contrastive initialisation expects at least 2 distinct sentences (in-batch negatives), "
            f"got {len(texts)}; pass a larger pair pool."
        )
    if cfg.fit.batch_size < 2:
        raise ValueError(
            f"Contrastive initialisation expects a batch size of at least 2, got {cfg.fit.batch_size}; "
            "the other sentences of a batch are the negatives."
        )
    if cfg.span_mask and bi.tokenizer.mask_token is None:
        raise ValueError(
            "Span masking (Mirror-BERT) expects a tokenizer with a mask token, got none; set "
            "span_mask=0 or use a model whose tokenizer defines mask_token."
        )


def train_contrastive(
    bi: BiEncoder,
    sentences: Sequence[str],
    cfg: ContrastiveConfig,
    *,
    evaluate: Evaluate | None = None,
    **fit_kwargs: Any,
) -> TrainResult:
    """Train `bi` without labels on `sentences` (distinct ones are used once per epoch).

    Each step encodes both views in one forward pass of 2B rows (train mode, so dropout differs per
    row) and applies the configured loss to the pooled vectors. The module then holds its best-dev
    weights (or the last ones without `evaluate`), like every `training.fit`.
    """
    texts = list(dict.fromkeys(sentences))
    _check_inputs(texts, cfg, bi)
    tokens = tokenize_texts(bi.tokenizer, texts, cfg.max_seq_length)
    loss_fn = LOSSES[cfg.loss]
    device = next(bi.parameters()).device

    def second_views(idx: np.ndarray) -> Tokenized | None:
        if not cfg.span_mask:
            return None
        masked = [mask_span(texts[i], cfg.span_mask, bi.tokenizer.mask_token) for i in idx]
        return tokenize_texts(bi.tokenizer, masked, cfg.max_seq_length)

    def step_loss(idx: np.ndarray) -> torch.Tensor:
        batch = _views(tokens, idx, second_views(idx))
        emb = bi(batch.collate(np.arange(len(batch)), device))
        return loss_fn(emb[: len(idx)], emb[len(idx) :], cfg.temperature)

    logger.info(
        "contrastive init: %d sentences, loss=%s tau=%.3f span_mask=%d",
        len(texts),
        cfg.loss,
        cfg.temperature,
        cfg.span_mask,
    )
    return fit(bi, len(texts), step_loss, cfg.fit, evaluate=evaluate, **fit_kwargs)
