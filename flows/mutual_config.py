"""The mutual-distillation flow's parameters (paper §2, mutual distillation; algorithm.md §1.6).

One frozen pydantic model, rendered by the Prefect UI as a form. Each PLM is an entry with its own
bi- and cross-encoder settings, unsupervised initialisation, device and seed; everything else (pair
pool, schedule, selection, evaluation) is shared, with the same meaning as in `SelfDistillConfig`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flows.config import quick_overrides
from trans_encoder_core.benchmarks import TASKS
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig, InitConfig, InitMethod
from trans_encoder_core.ensemble import check_model_name

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DASK_ENV_VAR = "TRANS_ENCODER_DASK_ADDRESS"


class PLMConfig(BaseModel):
    """One PLM of a mutual run: its two encoders and where and how it trains.

    Attributes:
        name: short name used in stage run names, in the `score__<name>` label columns and in the
            report; letters, digits, '.', '_', '-'.
        bi: the bi-encoder (starting checkpoint, pooling, max_seq_length, batch sizes, fit).
        cross: the cross-encoder (starting checkpoint: the paper's vanilla PLM; lengths, fit).
        init_method: "none" when `bi.model` already is a sentence encoder (a SimCSE checkpoint, the
            packaged model), else "simcse" or "mirror_bert" to train it without labels first.
        device: "auto", "cpu", "cuda", "cuda:1", ...; "auto" spreads the PLMs over the GPUs
            round-robin when one machine has several (thread runner) and lets each Dask worker pick.
        seed: seed of this PLM's shuffles and dropout (each model has its own; conventions.md §6).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    bi: BiEncoderConfig = Field(default_factory=BiEncoderConfig)
    cross: CrossEncoderConfig = Field(default_factory=CrossEncoderConfig)
    init_method: InitMethod = "none"
    device: str = "auto"
    seed: int = 2021

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_model_name(value)


def paper_plms() -> list[PLMConfig]:
    """The paper's base pair (algorithm.md §2.2): SimCSE-BERT and SimCSE-RoBERTa, crosses from the PLMs."""
    return [
        PLMConfig(
            name="bert",
            bi=BiEncoderConfig(model="princeton-nlp/unsup-simcse-bert-base-uncased", pooling="cls"),
            cross=CrossEncoderConfig(model="bert-base-uncased"),
        ),
        PLMConfig(
            name="roberta",
            bi=BiEncoderConfig(model="princeton-nlp/unsup-simcse-roberta-base", pooling="cls"),
            cross=CrossEncoderConfig(model="roberta-base"),
        ),
    ]


class MutualDistillConfig(BaseModel):
    """Trans-Encoder mutual distillation over N ≥ 2 PLMs (algorithm.md §1.6).

    Attributes:
        run_name: folder of this run's report under `{store}/runs/`.
        store: store root (local folder, `file://`, `s3://`; `memory://` only without Dask). On a
            Dask cluster of several machines every worker must reach it (S3 or a shared folder).
        pairs, pairs_format, sentence1_column, sentence2_column, drop_invalid_rows, pool, max_pairs,
            data, dev_selection, eval_tasks, cycles, select_start, bi_label_mix, bi_label_calibration,
            checkpoint_steps: as in `SelfDistillConfig`; `bi_label_mix` and `bi_label_calibration` use
            the cycle's *averaged* bi labels.
        init: "refresh" (every cycle restarts each cross from its `cross.model` and each bi from its
            starting bi-encoder: the paper, and what the official mutual script always does) or
            "sequential" (Table 13).
        plms: the PLMs, at least two, with distinct names.
        unsup: settings of the unsupervised initialisation of PLMs with `init_method` != "none".
        seed: seed of the pair subsample (each PLM has its own training seed).
        dask_address: address of a running Dask scheduler ("tcp://host:8786"); None reads
            $TRANS_ENCODER_DASK_ADDRESS, and without either the PLMs run on a thread pool.
        max_concurrency: PLM stages running at once on the thread pool (None: one per PLM when a GPU
            is visible, else 1, because concurrent CPU fits only compete for the same cores).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_name: str = "mutual"
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
    plms: list[PLMConfig] = Field(default_factory=paper_plms, min_length=2)
    unsup: InitConfig = Field(default_factory=InitConfig)
    seed: int = 2021
    checkpoint_steps: int = Field(default=200, ge=0)
    dask_address: str | None = None
    max_concurrency: int | None = Field(default=None, ge=1)

    @field_validator("run_name")
    @classmethod
    def _check_run_name(cls, value: str) -> str:
        if not _RUN_NAME.match(value):
            raise ValueError(
                f"run_name expects letters, digits, '.', '_' or '-' (no '/', not starting with '.'), got "
                f"{value!r}; choose a plain name such as 'mutual-2026-11'."
            )
        return value

    @field_validator("eval_tasks")
    @classmethod
    def _check_tasks(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TASKS]
        if unknown:
            raise ValueError(f"eval_tasks expects names from {list(TASKS)}, got unknown {unknown}.")
        return value

    @field_validator("plms")
    @classmethod
    def _check_plms(cls, value: list[PLMConfig]) -> list[PLMConfig]:
        names = [p.name for p in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"plms expects distinct names, got {repeated} more than once; rename them.")
        return value


def mutual_quick_overrides() -> dict[str, Any]:
    """The `quick` preset: self-distillation's quick settings (one STS-B cycle, CPU-sized) per PLM."""
    quick = quick_overrides()
    shared = {k: v for k, v in quick.items() if k not in ("bi", "cross")}
    return {**shared, "plm_template": {"bi": quick["bi"], "cross": quick["cross"]}}


MUTUAL_PRESETS: dict[str, Any] = {"paper": dict, "quick": mutual_quick_overrides}


def mutual_preset(preset: str = "paper") -> dict[str, Any]:
    """A preset's shared overrides and, under "plm_template", the bi/cross settings of every PLM."""
    if preset not in MUTUAL_PRESETS:
        raise ValueError(f"preset expects one of {sorted(MUTUAL_PRESETS)}, got {preset!r}.")
    return MUTUAL_PRESETS[preset]()
