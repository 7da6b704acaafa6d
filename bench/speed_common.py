"""Shared settings of bench/speed.py: paths, sizes, and the batch/length/schedule constants.

The constants are read from the core's config defaults (the paper's official values), so the
benchmark always measures what a default run trains and scores with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trans_encoder_core.config import (
    BiEncoderConfig,
    CrossEncoderConfig,
    FitConfig,
    bi_fit_defaults,
    cross_fit_defaults,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
MEASUREMENTS = (
    "bi_pool",
    "bi_unique",
    "cross",
    "train_cross",
    "train_bi",
    "train_cross_nodrop",
    "train_bi_nodrop",
)
IMPLS = ("ours", "st")
# (workload, table) of each measurement.
KIND = {
    "bi_pool": ("bi_score", "pool"),
    "bi_unique": ("bi_score", "unique"),
    "cross": ("cross_score", "cross"),
    "train_cross": ("train", "train"),
    "train_bi": ("train", "train"),
    "train_cross_nodrop": ("train", "train"),
    "train_bi_nodrop": ("train", "train"),
}

# Sizes: rows of each table and optimiser steps. "full" = the whole pool (27k pairs, 41k distinct sentences).
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "pool_pairs": None,
        "unique_pairs": 10_000,
        "cross_pairs": 8_000,
        "cross_steps": 300,
        "bi_steps": 100,
        "match_steps": 10,
        "warmup_rows": 256,
        "pipeline_pairs": 2_000,
    },
    "quick": {
        "pool_pairs": 2_000,
        "unique_pairs": 400,
        "cross_pairs": 200,
        "cross_steps": 8,
        "bi_steps": 3,
        "match_steps": 2,
        "warmup_rows": 64,
        "pipeline_pairs": 64,
    },
}

_BI, _CROSS = BiEncoderConfig(), CrossEncoderConfig()
FIT: dict[str, FitConfig] = {"train_cross": cross_fit_defaults(), "train_bi": bi_fit_defaults()}
BATCH = {
    "bi_score": _BI.score_batch_size,
    "cross_score": _CROSS.score_batch_size,
    "train_cross": FIT["train_cross"].batch_size,
    "train_bi": FIT["train_bi"].batch_size,
}
LENGTH = {"bi": _BI.max_seq_length, "cross": _CROSS.max_length}
LR = {kind: fit.learning_rate for kind, fit in FIT.items()}
WARMUP_RATIO = {kind: fit.warmup_ratio for kind, fit in FIT.items()}


def default_data() -> str:
    """The STS folder: $TRANS_ENCODER_DATA, else ../shared/data/sts next to the repository."""
    return os.environ.get("TRANS_ENCODER_DATA") or str(REPO_ROOT.parent / "shared" / "data" / "sts")


def train_kind(name: str) -> str:
    """ "train_cross" or "train_bi" for a training measurement (with or without `_nodrop`)."""
    return "train_cross" if name.startswith("train_cross") else "train_bi"


def quiet() -> None:
    """Silence transformers' logging and progress bars in this process."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
