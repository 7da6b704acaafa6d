"""Typed configuration of the core: encoders and their training (algorithm.md §2.1).

Every default is the official value of the paper's code; every option that would change the numbers
relative to the paper is explicit and off by default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Pooling = Literal["auto", "cls", "mean"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Device = str  # "auto", "cpu", "cuda", "cuda:1", ...


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FitConfig(_Frozen):
    """One training run of an encoder (sentence-transformers 2.0.0 `fit` semantics, made explicit).

    Attributes:
        learning_rate: peak learning rate of the linear schedule.
        batch_size: examples per optimiser step.
        epochs: passes over the training examples.
        warmup_ratio: warmup steps = ceil(ratio * total steps); the official cross fit uses 0.1, bi 0.
        weight_decay: AdamW decay on every parameter except biases and LayerNorm weights.
        adam_eps: AdamW epsilon (1e-6 in the official code, not torch's 1e-8).
        max_grad_norm: gradient clipping by global norm.
        eval_steps: evaluate on dev every this many steps (the counter restarts each epoch) and at
            each epoch end; 0 evaluates only at epoch ends.
        precision: "auto" = bf16 autocast on a GPU that supports it, fp32 otherwise (CPU included).
        seed: seed of the shuffles and of dropout; each epoch reseeds from (seed, epoch), so a fit
            resumed from an epoch checkpoint is identical to an uninterrupted one.
    """

    learning_rate: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    adam_eps: float = Field(default=1e-6, gt=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    eval_steps: int = Field(default=200, ge=0)
    precision: Precision = "auto"
    seed: int = 2021


def cross_fit_defaults(**overrides: object) -> FitConfig:
    """Official bi→cross fit: lr 2e-5, batch 32, 1 epoch, 10% warmup (algorithm.md §1.4 B)."""
    values: dict[str, object] = {"learning_rate": 2e-5, "batch_size": 32, "epochs": 1, "warmup_ratio": 0.1}
    return FitConfig(**{**values, **overrides})


def bi_fit_defaults(**overrides: object) -> FitConfig:
    """Official cross→bi fit: lr 5e-5, batch 128, 10 epochs, no warmup (algorithm.md §1.4 D)."""
    values: dict[str, object] = {"learning_rate": 5e-5, "batch_size": 128, "epochs": 10, "warmup_ratio": 0.0}
    return FitConfig(**{**values, **overrides})


class BiEncoderConfig(_Frozen):
    """The bi-encoder: which checkpoint, how it pools, how long its inputs are, how it trains.

    Attributes:
        model: Hugging Face model name or local folder of the starting bi-encoder (paper: a SimCSE
            checkpoint). "packaged" names the offline all-MiniLM-L6-v2 that ships with the project.
        pooling: "cls" (first token's last hidden state, before any pooler: the paper's default),
            "mean" (attention-masked), or "auto" (the folder's sentence-transformers pooling config,
            else "cls").
        max_seq_length: tokens per sentence (32 in the official code, training and evaluation).
        score_batch_size: sentences per forward pass when labelling and evaluating.
        fit: the cross→bi training run.
    """

    model: str = "packaged"
    pooling: Pooling = "auto"
    max_seq_length: int = Field(default=32, gt=1)
    score_batch_size: int = Field(default=128, gt=0)
    fit: FitConfig = Field(default_factory=bi_fit_defaults)


class CrossEncoderConfig(_Frozen):
    """The cross-encoder: its starting checkpoint, lengths, labelling options and training.

    Attributes:
        model: starting checkpoint of every refreshed cross-encoder (paper: the vanilla PLM such as
            bert-base-uncased); None uses the bi-encoder's starting checkpoint with a new head.
        max_length: tokens per pair when training, dev-evaluating and labelling (official: 64).
        eval_max_length: tokens per pair in the final test evaluation (official: the tokenizer
            maximum, 512, because the final reload drops the limit; algorithm.md §6.1.2).
        score_batch_size: pairs per forward pass when labelling and evaluating.
        both_orders: train on (s1, s2) and (s2, s1) with the same label (official for STS).
        symmetric_labels: label with the mean of both orders (off in the paper).
        clamp_targets: clamp bi-encoder cosines to [0, 1] before BCE (off in the paper).
        fit: the bi→cross training run.
    """

    model: str | None = None
    max_length: int = Field(default=64, gt=2)
    eval_max_length: int = Field(default=512, gt=2)
    score_batch_size: int = Field(default=64, gt=0)
    both_orders: bool = True
    symmetric_labels: bool = False
    clamp_targets: bool = False
    fit: FitConfig = Field(default_factory=cross_fit_defaults)
