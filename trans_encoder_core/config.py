"""Typed configuration of the core: encoders and their training (algorithm.md §2.1).

Every default is the official value of the paper's code; every option that would change the numbers
relative to the paper is explicit and off by default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

Pooling = Literal["auto", "cls", "mean"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Device = str  # "auto", "cpu", "cuda", "cuda:1", ...


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FitConfig(_Frozen):
    """One training run of an encoder (sentence-transformers 2.0.0 `fit` semantics, made explicit).

    Each field's `description` documents it (the Prefect UI shows it in the run form).
    """

    learning_rate: float = Field(gt=0, description="Peak learning rate of the linear schedule.")
    batch_size: int = Field(gt=0, description="Examples per optimiser step.")
    epochs: int = Field(gt=0, description="Passes over the training examples.")
    warmup_ratio: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Warmup steps = ceil(ratio * total steps); the official cross fit uses 0.1, bi 0.",
    )
    weight_decay: float = Field(
        default=0.01, ge=0, description="AdamW decay on every parameter except biases and LayerNorm weights."
    )
    adam_eps: float = Field(
        default=1e-6, gt=0, description="AdamW epsilon (1e-6 in the official code, not torch's 1e-8)."
    )
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping by global norm.")
    eval_steps: int = Field(
        default=200,
        ge=0,
        description="Evaluate on dev every this many steps (the counter restarts each epoch) and at each "
        "epoch end; 0 evaluates only at epoch ends.",
    )
    precision: Precision = Field(
        default="auto",
        description='"auto" = bf16 autocast on a GPU with bf16 or a CPU with native bf16 (AVX512-BF16, '
        "AMX), fp32 elsewhere (emulated bf16 is slower than fp32); TRANS_ENCODER_CPU_BF16=0 keeps CPUs "
        "at fp32.",
    )
    seed: int = Field(
        default=2021,
        description="Seed of the shuffles and of dropout; each epoch reseeds from (seed, epoch), so a fit "
        "resumed from an epoch checkpoint is identical to an uninterrupted one.",
    )
    packing: bool = Field(
        default=False,
        description="Padding-free batches: the sentences (pairs) of a batch are packed into dense rows "
        "with a block-diagonal attention mask, so no compute goes to padding (BERT, RoBERTa, MPNet; "
        "other architectures run padded). Same examples and steps; equal to the padded fit up to float "
        "rounding and dropout masks (ours; off in the paper).",
    )
    eval_autocast: bool = Field(
        default=False,
        description="Run the dev evaluations inside the fit in the fit's precision (bf16 inference when "
        "training in bf16; ~2x cheaper on CPUs with AMX). Dev scores move by rounding, so selection can "
        "differ in near ties (ours; off: fp32 evaluation as in the paper).",
    )
    fast_dropout: bool = Field(
        default=False,
        description="Draw dropout masks from 16 random bits per element (the drop probability rounded "
        "to a multiple of 2^-16, expectation exact) instead of torch's per-element Bernoulli draws, "
        "which cost close to half of a CPU training step. Same distribution, other masks (ours; off: "
        "torch's dropout as in the paper).",
    )
    fused_optimizer: bool = Field(
        default=False,
        description="torch's fused AdamW kernel (one pass over each parameter) instead of the "
        "per-tensor one: the same update up to float rounding, ~5x cheaper on CPUs (ours; off).",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # Our options appear in dumps (and so in stage keys) only when on: keys of earlier runs stay valid.
        data = handler(self)
        for option in ("packing", "eval_autocast", "fast_dropout", "fused_optimizer"):
            if not getattr(self, option):
                data.pop(option, None)
        return data


def cross_fit_defaults(**overrides: object) -> FitConfig:
    """Official bi→cross fit: lr 2e-5, batch 32, 1 epoch, 10% warmup (algorithm.md §1.4 B)."""
    values: dict[str, object] = {"learning_rate": 2e-5, "batch_size": 32, "epochs": 1, "warmup_ratio": 0.1}
    return FitConfig(**{**values, **overrides})


def bi_fit_defaults(**overrides: object) -> FitConfig:
    """Official cross→bi fit: lr 5e-5, batch 128, 10 epochs, no warmup (algorithm.md §1.4 D)."""
    values: dict[str, object] = {"learning_rate": 5e-5, "batch_size": 128, "epochs": 10, "warmup_ratio": 0.0}
    return FitConfig(**{**values, **overrides})


SCORE_PRECISION_HELP = (
    'Precision of labelling and of the final evaluations: fp32 as in the official code, or "auto" / '
    '"bf16" for bf16 autocast inference where it is native (1.8-2.4x faster scoring on this project\'s '
    "AMX CPU; scores move by bf16 rounding, so labels and results change in the last digits; ours)."
)


def _hide_fp32_scoring(data: dict[str, object]) -> dict[str, object]:
    # Added after the first release: in dumps (and keys) only when not the official fp32.
    if data.get("score_precision") == "fp32":
        data.pop("score_precision")
    return data


class BiEncoderConfig(_Frozen):
    """The bi-encoder: which checkpoint, how it pools, how long its inputs are, how it trains.

    Each field's `description` documents it (the Prefect UI shows it in the run form).
    """

    model: str = Field(
        default="packaged",
        description="Hugging Face model name or local folder of the starting bi-encoder (paper: a SimCSE "
        'checkpoint). "packaged" names the offline all-MiniLM-L6-v2 that ships with the project.',
    )
    pooling: Pooling = Field(
        default="auto",
        description="\"cls\" (first token's last hidden state, before any pooler: the paper's default), "
        '"mean" (attention-masked), or "auto" (the folder\'s sentence-transformers pooling config, else '
        '"cls").',
    )
    max_seq_length: int = Field(
        default=32,
        gt=1,
        description="Tokens per sentence (32 in the official code, training and evaluation).",
    )
    score_batch_size: int = Field(
        default=128, gt=0, description="Sentences per forward pass when labelling and evaluating."
    )
    score_precision: Precision = Field(default="fp32", description=SCORE_PRECISION_HELP)
    fit: FitConfig = Field(default_factory=bi_fit_defaults, description="The cross→bi training run.")

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        return _hide_fp32_scoring(handler(self))


class CrossEncoderConfig(_Frozen):
    """The cross-encoder: its starting checkpoint, lengths, labelling options and training.

    Each field's `description` documents it (the Prefect UI shows it in the run form).
    """

    model: str | None = Field(
        default=None,
        description="Starting checkpoint of every refreshed cross-encoder (paper: the vanilla PLM such as "
        "bert-base-uncased); None uses the bi-encoder's starting checkpoint with a new head.",
    )
    max_length: int = Field(
        default=64,
        gt=2,
        description="Tokens per pair when training, dev-evaluating and labelling (official: 64).",
    )
    eval_max_length: int = Field(
        default=512,
        gt=2,
        description="Tokens per pair in the final test evaluation (official: the tokenizer maximum, 512, "
        "because the final reload drops the limit; algorithm.md §6.1.2).",
    )
    score_batch_size: int = Field(
        default=64, gt=0, description="Pairs per forward pass when labelling and evaluating."
    )
    score_precision: Precision = Field(default="fp32", description=SCORE_PRECISION_HELP)
    both_orders: bool = Field(
        default=True, description="Train on (s1, s2) and (s2, s1) with the same label (official for STS)."
    )
    symmetric_labels: bool = Field(
        default=False, description="Label with the mean of both orders (off in the paper)."
    )
    clamp_targets: bool = Field(
        default=False, description="Clamp bi-encoder cosines to [0, 1] before BCE (off in the paper)."
    )
    fit: FitConfig = Field(default_factory=cross_fit_defaults, description="The bi→cross training run.")

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        return _hide_fp32_scoring(handler(self))


InitMethod = Literal["none", "simcse", "mirror_bert"]


class ContrastiveConfig(_Frozen):
    """One unsupervised contrastive recipe that turns a pretrained LM into a bi-encoder.

    This is step 2.1 of the paper ("from PLM to a bi-encoder", §2.1; algorithm.md §1.2), which the
    authors never ran themselves: they start from released SimCSE / Mirror-BERT checkpoints. Each
    field's `description` documents it (the Prefect UI shows it in the run form).
    """

    loss: Literal["in_batch", "nt_xent"] = Field(
        default="in_batch",
        description='"in_batch" (SimCSE: each first view against the B second views of the batch) or '
        '"nt_xent" (Mirror-BERT: each of the 2B views against the 2B - 1 others).',
    )
    temperature: float = Field(
        default=0.05, gt=0, description="Softmax temperature over cosine similarities."
    )
    span_mask: int = Field(
        default=0,
        ge=0,
        description="Characters of the second view replaced by the mask token at a random position "
        "(Mirror-BERT's random span masking; 0 = dropout views only, as in SimCSE).",
    )
    max_seq_length: int = Field(default=32, gt=1, description="Tokens per sentence while training.")
    fit: FitConfig = Field(
        description="The training run (linear decay as everywhere in this project; see the defaults)."
    )


def simcse_defaults(**overrides: object) -> ContrastiveConfig:
    """Unsupervised SimCSE as published (Gao, Yao, Chen, EMNLP 2021).

    From princeton-nlp/SimCSE `run_unsup_example.sh` (BERT-base): 1 epoch, batch 64, lr 3e-5,
    max_seq_length 32, temperature 0.05, [CLS] pooling, dropout 0.1 as the only augmentation, STS-B
    dev evaluated every 125 steps with the best checkpoint kept; HF Trainer defaults for the rest
    (AdamW eps 1e-8, no weight decay, linear decay, no warmup). The README's table gives lr 1e-5 with
    batch 512 for RoBERTa-base. Not reproduced: the MLP over [CLS] that SimCSE trains and then drops
    (`--mlp_only_train`), and its 1M-sentence Wikipedia corpus (we use the pool's sentences).
    """
    fit = FitConfig(
        learning_rate=3e-5, batch_size=64, epochs=1, weight_decay=0.0, adam_eps=1e-8, eval_steps=125
    )
    values: dict[str, object] = {"loss": "in_batch", "temperature": 0.05, "max_seq_length": 32, "fit": fit}
    return ContrastiveConfig(**{**values, **overrides})


def mirror_bert_defaults(**overrides: object) -> ContrastiveConfig:
    """Mirror-BERT for sentences as published (Liu, Vulić, Korhonen, Collier, EMNLP 2021).

    From cambridgeltl/mirror-bert `mirror_scripts/mirror_sentence_roberta.sh` and `train.py`: 1 epoch,
    batch 200, lr 2e-5, AdamW weight decay 0.01, max_length 50, InfoNCE (NT-Xent) temperature 0.04,
    dropout 0.1, a random span of 5 characters masked in one view, [CLS] pooling (RoBERTa); 10k
    sentences of the task's own text. No dev selection (eval only at the epoch end here). Differences:
    the official loop keeps the learning rate constant (ours decays linearly) and pads every batch to
    50 tokens (ours pads per batch).
    """
    fit = FitConfig(
        learning_rate=2e-5, batch_size=200, epochs=1, weight_decay=0.01, adam_eps=1e-8, eval_steps=0
    )
    values: dict[str, object] = {
        "loss": "nt_xent",
        "temperature": 0.04,
        "span_mask": 5,
        "max_seq_length": 50,
        "fit": fit,
    }
    return ContrastiveConfig(**{**values, **overrides})


class InitConfig(_Frozen):
    """Unsupervised bi-encoder initialisation (paper §2.1; algorithm.md §1.2): both recipes' settings.

    The method itself is chosen by the flow (`init_method`: none | simcse | mirror_bert); "none" is
    for a starting model that already is a sentence encoder (e.g. a SimCSE checkpoint, the packaged
    model). Defaults are each method's published values (see `simcse_defaults`,
    `mirror_bert_defaults`). Each field's `description` documents it (the Prefect UI shows it in the
    run form).
    """

    simcse: ContrastiveConfig = Field(default_factory=simcse_defaults, description="The SimCSE recipe.")
    mirror_bert: ContrastiveConfig = Field(
        default_factory=mirror_bert_defaults, description="The Mirror-BERT recipe."
    )
    max_sentences: int | None = Field(
        default=None,
        ge=2,
        description="Train on a seeded random subset of this many distinct pool sentences (None: all of "
        "them).",
    )

    def recipe(self, method: str) -> ContrastiveConfig:
        """The settings of `method` ("simcse" or "mirror_bert")."""
        if method == "simcse":
            return self.simcse
        if method == "mirror_bert":
            return self.mirror_bert
        raise ValueError(f"Initialisation expects method 'simcse' or 'mirror_bert', got {method!r}.")
