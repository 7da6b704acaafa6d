"""Padding-free forward passes: the sentences (or pairs) of a batch packed into dense rows.

A padded batch of B sequences at the longest length L_p costs B·L_p token positions; a random
training batch of the STS pool is about half padding (bench/token_fraction.py). Packing places the
sequences one after another into a few rows of `row_tokens` positions (first-fit decreasing), gives
each token its position within its own sequence (`position_ids`) and a block-diagonal attention
mask, so a token attends exactly to the tokens of its own sequence, as in the padded computation.
The encoder's output is scattered back to the padded (B, L_p, hidden) layout, so pooling and heads
are unchanged. The result equals the padded one up to float rounding (tests/core/test_packing.py).

It is exact only where absolute positions come from `position_ids` and attention takes a 4D mask:
BERT and RoBERTa-style models with eager or SDPA attention, and MPNet, whose extra relative position
bias depends only on the distance j - i between two tokens, which packing keeps within a sequence
(the contiguous block) and masks between sequences.
`packing_support` names the reason for anything else, and the encoders then use the padded path.
Dropout draws different masks on a packed batch (other shapes), so a fit with dropout is
statistically, not bitwise, the same as a padded one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trans_encoder_core.dropout import ATTENTION_NAME, attention_name, bool_mask_attention

logger = logging.getLogger(__name__)

# Row length C: linear layers cost the same per real token whatever C, but attention is computed
# over whole rows (R·C² scores, most of them masked between sequences), so short rows waste less;
# rows must still hold the longest sequence and leave little unused tail. On the STS pool with the
# official lengths (bench/results/token-fraction-*.json), C = 64 fills rows to 97 % (bi, 32 tokens)
# and 92 % (cross, 64 tokens) and computes 0.93× and 0.51× the padded batches' attention scores;
# C = 128 fills them as well but computes 1.9× and 1.0×.
ROW_TOKENS = 64
# Pack only when the rows hold at most this fraction of the padded positions: length-sorted
# (scoring) batches are already ~99 % real tokens and would gain nothing.
MAX_PACKED_FRACTION = 0.9

# Types whose absolute positions count from padding_idx + 1 (RoBERTa's convention, kept by MPNet).
_POSITION_OFFSET_TYPES = ("roberta", "xlm-roberta", "camembert", "mpnet")
_SUPPORTED_TYPES = ("bert", *_POSITION_OFFSET_TYPES)
_CROSS_HEADS = {
    "BertForSequenceClassification": "bert",
    "RobertaForSequenceClassification": "roberta",
    "XLMRobertaForSequenceClassification": "roberta",
    "CamembertForSequenceClassification": "roberta",
    "MPNetForSequenceClassification": "roberta",  # same head shape: dense, tanh, out_proj on token 0
}


def packing_support(model: nn.Module, *, head: bool = False) -> str | None:
    """None when packing is exact for `model`, else the reason the padded path is used.

    Args:
        model: a Hugging Face encoder (`AutoModel`) or, with `head`, a sequence classifier.
        head: the cross-encoder case: the classification head must be one whose input is the
            first token's hidden state (BERT's pooler, RoBERTa's classification head).
    """
    config = model.config
    model_type = getattr(config, "model_type", "")
    if model_type not in _SUPPORTED_TYPES:
        return f"model type {model_type!r} is not one of {_SUPPORTED_TYPES} (positions not from position_ids)"
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return f"position_embedding_type {config.position_embedding_type!r} is not 'absolute'"
    if getattr(config, "is_decoder", False):
        return "a decoder (causal attention)"
    attn = attention_name(model)
    if attn not in ("eager", "sdpa", ATTENTION_NAME):
        return f"attention implementation {attn!r} ignores a 4D mask (eager or sdpa needed)"
    if head:
        kind = _CROSS_HEADS.get(type(model).__name__)
        if kind is None:
            return f"classification head of {type(model).__name__} is not a known first-token head"
        if kind == "bert" and getattr(model.base_model, "pooler", None) is None:
            return "BERT classifier without a pooler"
    return None


def plan_rows(lengths: np.ndarray, row_tokens: int = ROW_TOKENS) -> tuple[np.ndarray, np.ndarray, int]:
    """First-fit decreasing: (row, offset) of each sequence and the row length used.

    The row length is `row_tokens`, or the longest sequence when that is longer. Deterministic:
    ties in length keep input order.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    capacity = max(int(row_tokens), int(lengths.max()))
    row = np.empty(len(lengths), dtype=np.int64)
    offset = np.empty(len(lengths), dtype=np.int64)
    used: list[int] = []
    for i in np.argsort(-lengths, kind="stable"):
        n = int(lengths[i])
        for r, fill in enumerate(used):
            if fill + n <= capacity:
                break
        else:
            r = len(used)
            used.append(0)
        row[i], offset[i] = r, used[r]
        used[r] += n
    return row, offset, capacity


@dataclass(frozen=True)
class PackedBatch:
    """Model inputs of the packed rows and the map back to the padded layout."""

    inputs: dict[str, torch.Tensor]
    dest: torch.Tensor  # flat packed position of each real token, in padded row-major order
    real: torch.Tensor  # (B, L_p) bool: which padded positions hold a token
    rows: int
    row_tokens: int

    def unpack(self, hidden: torch.Tensor) -> torch.Tensor:
        """Packed (R, C, H) hidden states back to the padded (B, L_p, H) layout, zeros at padding."""
        flat = hidden.reshape(self.rows * self.row_tokens, -1)[self.dest]
        out = flat.new_zeros((*self.real.shape, flat.shape[-1]))
        out[self.real] = flat
        return out


def _position_base(model: nn.Module) -> int:
    config = model.config
    if config.model_type in _POSITION_OFFSET_TYPES:
        return int(config.pad_token_id or 0) + 1  # RoBERTa counts positions from padding_idx + 1
    return 0


def pack_batch(
    batch: dict[str, torch.Tensor],
    model: nn.Module,
    row_tokens: int | None = None,
    max_fraction: float | None = None,
) -> PackedBatch | None:
    """Pack a padded batch (`input_ids`, `attention_mask`, optional `token_type_ids`) for `model`.

    None when the packed rows would hold more than `max_fraction` of the padded positions
    (defaults: the module's `ROW_TOKENS` and `MAX_PACKED_FRACTION`, read at call time).
    """
    mask = batch["attention_mask"]
    lengths = mask.sum(1).cpu().numpy()
    row, offset, capacity = plan_rows(lengths, row_tokens or ROW_TOKENS)
    rows = int(row.max()) + 1
    limit = MAX_PACKED_FRACTION if max_fraction is None else max_fraction
    if rows * capacity > limit * mask.numel():
        return None
    real = mask.bool()
    device = mask.device
    within = (mask.cumsum(1) - 1)[real]  # position of each real token within its sequence
    seq = torch.arange(mask.shape[0], device=device).unsqueeze(1).expand_as(mask)[real]
    dest = torch.from_numpy(row * capacity + offset).to(device)[seq] + within
    size = rows * capacity

    def scatter(values: torch.Tensor, fill: int) -> torch.Tensor:
        out = torch.full((size,), fill, dtype=values.dtype, device=device)
        out[dest] = values
        return out.view(rows, capacity)

    base = _position_base(model)
    inputs = {
        "input_ids": scatter(batch["input_ids"][real], int(model.config.pad_token_id or 0)),
        "position_ids": scatter(within + base, base),
    }
    if "token_type_ids" in batch:
        inputs["token_type_ids"] = scatter(batch["token_type_ids"][real], 0)
    # Each unused tail slot is a sequence of its own (it attends to itself), so no row is all masked.
    segment = torch.arange(mask.shape[0], mask.shape[0] + size, device=device)
    segment[dest] = seq
    segment = segment.view(rows, capacity)
    same = (segment.unsqueeze(2) == segment.unsqueeze(1)).unsqueeze(1)  # (R, 1, C, C)
    if bool_mask_attention(model):
        inputs["attention_mask"] = same
    else:  # eager attention adds the mask to the scores
        dtype = next(model.parameters()).dtype
        zero = torch.zeros((), dtype=dtype, device=device)
        inputs["attention_mask"] = torch.where(same, zero, torch.finfo(dtype).min)
    return PackedBatch(inputs, dest, real, rows, capacity)


def encoder_hidden(
    model: nn.Module, batch: dict[str, torch.Tensor], *, pack: bool, **kwargs: float
) -> torch.Tensor:
    """`model(**batch).last_hidden_state` (padded layout), computed on packed rows when `pack`.

    `kwargs` go to `pack_batch` (`row_tokens`, `max_fraction`); a batch that packing would not
    shrink runs padded.
    """
    packed = pack_batch(batch, model, **kwargs) if pack else None
    if packed is None:
        return model(**batch).last_hidden_state
    return packed.unpack(model(**packed.inputs).last_hidden_state)


def classifier_logits(
    model: nn.Module, batch: dict[str, torch.Tensor], *, pack: bool, **kwargs: float
) -> torch.Tensor:
    """A sequence classifier's logits (B, labels), its encoder run on packed rows when `pack`.

    The head sees the padded-layout hidden states, first token first, as in the model's own forward.
    """
    if not pack:
        return model(**batch).logits
    base = model.base_model
    sequence = encoder_hidden(base, batch, pack=True, **kwargs)[:, :1]
    if _CROSS_HEADS[type(model).__name__] == "bert":
        return model.classifier(model.dropout(base.pooler(sequence)))
    return model.classifier(sequence)


def packing_active(encoder: nn.Module, *, head: bool) -> bool:
    """Whether `encoder.packing` is asked for and exact for `encoder.model` (the reason logged once)."""
    if not getattr(encoder, "packing", False):
        return False
    reason = packing_support(encoder.model, head=head)
    if reason is not None and not getattr(encoder, "_packing_warned", False):
        logger.info("packing off for %s: %s; using padded batches", type(encoder.model).__name__, reason)
        encoder._packing_warned = True
    return reason is None


def real_token_fraction(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Real tokens over padded positions (batch × its longest sequence) of a list of batches."""
    lengths = np.asarray(lengths)
    padded = sum(len(idx) * int(lengths[idx].max()) for idx in batches if len(idx))
    return float(sum(int(lengths[idx].sum()) for idx in batches)) / max(1, padded)


def packed_positions(lengths: np.ndarray, batches: list[np.ndarray], row_tokens: int = ROW_TOKENS) -> int:
    """Token positions the packed rows of `batches` hold (rows × row length, summed)."""
    total = 0
    for idx in batches:
        if len(idx):
            row, _, capacity = plan_rows(np.asarray(lengths)[idx], row_tokens)
            total += (int(row.max()) + 1) * capacity
    return total
