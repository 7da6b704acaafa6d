"""The flows' parameters: one frozen pydantic model per flow, rendered by the Prefect UI as a form.

Defaults are the paper's (algorithm.md §2.1); presets bundle settings for common jobs.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trans_encoder_core.benchmarks import TASKS
from trans_encoder_core.config import (
    BiEncoderConfig,
    CrossEncoderConfig,
    InitConfig,
    InitMethod,
    bi_fit_defaults,
    cross_fit_defaults,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class SelfDistillConfig(BaseModel):
    """Trans-Encoder self-distillation (algorithm.md §1.4).

    Attributes:
        run_name: folder of this run's report under `{store}/runs/`; letters, digits, '.', '_', '-'.
        store: store root: a local folder, `file://`, `memory://` or `s3://bucket/prefix` (S3 extra).
        pairs: your unlabeled pair file (path or URL: Parquet, CSV, TSV or JSONL); None uses the
            benchmark pool given by `pool`.
        pool: benchmark pool when `pairs` is None: "transductive" (the paper: every pair of every
            split of STS12–16, STS-B and SICK-R), "inductive" (no test pairs) or "stsb" (STS-B only).
        max_pairs: keep a seeded random subset of this many pairs (None: all).
        data: benchmark folder for dev selection and evaluation; None reads $TRANS_ENCODER_DATA.
        dev_selection: select the best checkpoint and cycle on STS-B dev (the paper); False keeps the
            last checkpoint and the last cycle (a truly unsupervised setting).
        eval_tasks: benchmarks to report at the end.
        cycles: bi→cross→bi cycles (paper: 3 for STS).
        init: "refresh" (each cycle restarts the cross-encoder from `cross.model` and the bi-encoder
            from `bi.model`: the paper's default) or "sequential" (Table 13).
        select_start: let the untrained starting bi-encoder win the bi selection when no cycle beats it
            on dev (off in the paper).
        bi_label_mix: train the bi-encoder on (1 - w) · cross scores + w · the cycle's bi scores (an
            option of ours, off in the paper).
        bi_label_calibration: "quantile" maps the cross scores onto the distribution of the cycle's
            bi scores before mixing, keeping their ranks, so that the bi-encoder learns the ranking
            and not the cross-encoder's calibration (an option of ours; "none" in the paper).
        seed: seed of every shuffle, dropout mask and subsample.
        device: "auto" (GPU if present), "cpu", "cuda", "cuda:1", ...
        checkpoint_steps: also checkpoint training every this many steps (0: each epoch end only).
        init_method: "none" (`bi.model` already is a sentence encoder), or "simcse" / "mirror_bert" to
            first train `bi.model` (a raw PLM) as a bi-encoder without labels (paper §2.1).
        unsup: the SimCSE and Mirror-BERT settings (their published defaults).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_name: str = "default"
    store: str = "./te-store"
    pairs: str | None = None
    pairs_format: Literal["auto", "parquet", "csv", "tsv", "jsonl"] = "auto"
    sentence1_column: str = "sentence1"
    sentence2_column: str = "sentence2"
    drop_invalid_rows: bool = False
    pool: Literal["transductive", "inductive", "stsb"] = "transductive"
    max_pairs: int | None = Field(default=None, ge=1)
    data: str | None = None
    dev_selection: bool = True
    eval_tasks: list[str] = Field(default_factory=lambda: list(TASKS))
    cycles: int = Field(default=3, ge=1, le=50)
    init: Literal["refresh", "sequential"] = "refresh"
    select_start: bool = False
    bi_label_mix: float = Field(default=0.0, ge=0.0, le=1.0)
    bi_label_calibration: Literal["none", "quantile"] = "none"
    bi: BiEncoderConfig = Field(default_factory=BiEncoderConfig)
    cross: CrossEncoderConfig = Field(default_factory=CrossEncoderConfig)
    seed: int = 2021
    device: str = "auto"
    checkpoint_steps: int = Field(default=200, ge=0)
    init_method: InitMethod = "none"
    unsup: InitConfig = Field(default_factory=InitConfig)

    @field_validator("run_name")
    @classmethod
    def _check_run_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"run_name expects letters, digits, '.', '_' or '-' (no '/', not starting with '.'), got "
                f"{value!r}; choose a plain name such as 'sts-2026-11'."
            )
        return value

    @field_validator("eval_tasks")
    @classmethod
    def _check_tasks(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TASKS]
        if unknown:
            raise ValueError(f"eval_tasks expects names from {list(TASKS)}, got unknown {unknown}.")
        return value


def quick_overrides() -> dict[str, Any]:
    """The `quick` preset: one cycle on STS-B's pairs, sized for 2 CPU cores (README: why)."""
    return {
        "pool": "stsb",
        "cycles": 1,
        "select_start": True,
        "bi_label_calibration": "quantile",
        "checkpoint_steps": 100,
        "cross": CrossEncoderConfig(
            symmetric_labels=True,
            eval_max_length=128,
            fit=cross_fit_defaults(learning_rate=1e-4, eval_steps=100, precision="bf16"),
        ),
        "bi": BiEncoderConfig(
            fit=bi_fit_defaults(learning_rate=2e-5, epochs=1, eval_steps=20, precision="bf16")
        ),
    }


PRESETS: dict[str, Any] = {"paper": dict, "quick": quick_overrides}


def preset_config(preset: str = "paper", **overrides: Any) -> SelfDistillConfig:
    """The config of a preset with field overrides applied (overrides win)."""
    if preset not in PRESETS:
        raise ValueError(f"preset expects one of {sorted(PRESETS)}, got {preset!r}.")
    return SelfDistillConfig(**{**PRESETS[preset](), **overrides})
