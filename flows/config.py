"""The distillation flow's parameters: one frozen pydantic model, rendered by the Prefect UI as a form.

Trans-Encoder is one algorithm over N PLMs (paper §2): with N = 1 it is self-distillation, with N ≥ 2
mutual distillation, where the PLMs share the average of their pseudo-labels (algorithm.md §1.6).
Defaults are the paper's (algorithm.md §2.1); presets bundle settings for common jobs and are the
only place those settings are written (prefect.yaml's parameters are tested equal to them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trans_encoder_core.benchmarks import TASKS
from trans_encoder_core.binary_tasks import BINARY_TASKS, BOTH_ORDERS
from trans_encoder_core.config import (
    BiEncoderConfig,
    CrossEncoderConfig,
    InitConfig,
    InitMethod,
    Precision,
    bi_fit_defaults,
    cross_fit_defaults,
)
from trans_encoder_core.ensemble import check_model_name
from trans_encoder_core.eval_sets import EvalFile

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DASK_ENV_VAR = "TRANS_ENCODER_DASK_ADDRESS"


def short_name(model: str) -> str:
    """A PLM name from a model reference: its last path or hub segment in letters, digits, '.', '_', '-'."""
    last = model.rstrip("/").rsplit("/", 1)[-1] or "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-._")[:48] or "model"


class PLMConfig(BaseModel):
    """One PLM: its two encoders and where and how it trains."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        default="",
        description="Short name used in stage run names, label columns and the report (letters, digits, "
        "'.', '_', '-'); empty: derived from the bi-encoder's model name.",
    )
    bi: BiEncoderConfig = Field(
        default_factory=BiEncoderConfig,
        description="The bi-encoder: starting checkpoint, pooling, max_seq_length, batch sizes, training.",
    )
    cross: CrossEncoderConfig = Field(
        default_factory=CrossEncoderConfig,
        description="The cross-encoder: starting checkpoint (the paper: the vanilla PLM), lengths, training.",
    )
    init_method: InitMethod = Field(
        default="none",
        description="'none' when bi.model already is a sentence encoder (SimCSE checkpoint, packaged "
        "model); 'simcse' or 'mirror_bert' first train the raw PLM without labels (paper §2.1).",
    )
    device: str = Field(
        default="auto",
        description="'auto' (a GPU when there is one; one GPU per PLM when there are several), 'cpu', "
        "'cuda', 'cuda:1', ...",
    )
    seed: int | None = Field(
        default=None,
        description="Seed of this PLM's shuffles and dropout masks; empty: the run's seed.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name"):
            bi = data.get("bi")
            model = bi.get("model") if isinstance(bi, dict) else getattr(bi, "model", None)
            data = {**data, "name": short_name(model or BiEncoderConfig().model)}
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_model_name(value)


class DistillConfig(BaseModel):
    """Trans-Encoder distillation over one PLM (self-distillation) or several (mutual distillation)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_name: str = Field(
        default="default",
        description="Folder of this run's report under {store}/runs/; letters, digits, '.', '_', '-'.",
    )
    store: str = Field(
        default="./te-store",
        description="Store root: a local folder, file://, memory:// or s3://bucket/prefix (S3 extra).",
    )
    pairs: str | None = Field(
        default=None,
        description="Your unlabeled pair file (path or URL: Parquet, CSV, TSV or JSONL, optionally "
        "compressed); empty: the benchmark pool given by `pool`.",
    )
    pairs_format: Literal["auto", "parquet", "csv", "tsv", "jsonl"] = Field(
        default="auto", description="Format of the pair file; 'auto' reads it from the file name."
    )
    sentence1_column: str = Field(default="sentence1", description="Column of the first sentences.")
    sentence2_column: str = Field(default="sentence2", description="Column of the second sentences.")
    drop_invalid_rows: bool = Field(
        default=False, description="Drop rows with an empty or missing sentence instead of failing."
    )
    pool: Literal["transductive", "inductive", "stsb", "mrpc", "qnli", "qqp"] = Field(
        default="transductive",
        description="Benchmark pool when `pairs` is empty: 'transductive' (the paper: every pair of every "
        "split of STS12-16, STS-B and SICK-R), 'inductive' (no test pairs) or 'stsb' (STS-B only); or a "
        "binary task, 'mrpc', 'qnli' or 'qqp' (paper §1.7: its train+dev+test pairs, its dev set selects "
        "and its test set is reported, both by ROC-AUC; files from `binary_data`).",
    )
    binary_data: str | None = Field(
        default=None,
        description="Folder of the binary tasks (mrpc/, qnli/, qqp/) for a binary pool; empty: "
        "$TRANS_ENCODER_BINARY_DATA.",
    )
    max_pairs: int | None = Field(
        default=None, ge=1, description="Keep a seeded random subset of this many pairs (empty: all)."
    )
    data: str | None = Field(
        default=None,
        description="Benchmark folder for dev selection and evaluation; empty: $TRANS_ENCODER_DATA.",
    )
    dev_selection: bool = Field(
        default=True,
        description="Select the best checkpoint and cycle on STS-B dev (the paper); off keeps the last "
        "checkpoint and cycle (a truly unsupervised setting).",
    )
    eval_tasks: list[str] = Field(
        default_factory=lambda: list(TASKS), description="Benchmarks to report at the end."
    )
    dev: EvalFile | None = Field(
        default=None,
        description="Your labelled dev file (Parquet/CSV/TSV/JSONL: sentence1, sentence2 and a label "
        "column): every selection uses it instead of STS-B dev (which is then not read). Metric: "
        "ROC-AUC x100 for 0/1 labels, else Spearman x100 ('metric' overrides).",
    )
    tests: dict[str, EvalFile] = Field(
        default_factory=dict,
        description="Your labelled test files by name (letters, digits, '.', '_', '-'), reported next to "
        "the benchmarks, each with the metric its labels call for.",
    )
    cycles: int = Field(default=3, ge=1, le=50, description="bi -> cross -> bi cycles (paper: 3 for STS).")
    restart: Literal["refresh", "sequential"] = Field(
        default="refresh",
        description="Where each cycle's encoders start: 'refresh' (every cross-encoder from its "
        "cross.model, every bi-encoder from its starting bi-encoder: the paper) or 'sequential' (each "
        "from the other formulation's last model; Table 13).",
    )
    select_start: bool = Field(
        default=False,
        description="Let the untrained starting bi-encoder win the bi selection when no cycle beats it "
        "on dev (off in the paper).",
    )
    bi_label_mix: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Train the bi-encoders on (1 - w) * cross labels + w * the cycle's bi labels (ours; "
        "0 in the paper).",
    )
    bi_label_calibration: Literal["none", "quantile"] = Field(
        default="none",
        description="'quantile' maps the cross labels onto the distribution of the cycle's bi labels, "
        "keeping their ranks, before the bi-encoders learn them (ours; 'none' in the paper).",
    )
    plms: list[PLMConfig] = Field(
        default_factory=lambda: [PLMConfig()],
        min_length=1,
        description="The PLMs: one for self-distillation, two or more (distinct names) for mutual "
        "distillation, where they share the average of their pseudo-labels.",
    )
    unsup: InitConfig = Field(
        default_factory=InitConfig,
        description="Settings of the unsupervised initialisation of PLMs with init_method != 'none'.",
    )
    seed: int = Field(
        default=2021, description="Seed of the pair subsample, and of every PLM that sets no seed."
    )
    checkpoint_steps: int = Field(
        default=200, ge=0, description="Also checkpoint training every this many steps (0: epoch ends)."
    )
    dask_address: str | None = Field(
        default=None,
        description="Dask scheduler ('tcp://host:8786') for the PLMs' stages; empty reads "
        "$TRANS_ENCODER_DASK_ADDRESS, and without either the PLMs run on a thread pool.",
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="PLM stages at once on the thread pool (empty: one per PLM with a GPU, else 1).",
    )
    publish: bool = Field(
        default=False,
        description="After the report, publish the selected models as a new registry version "
        "(`trans-encoder models list`, `models export`) if they pass the dev gate; part of no stage key.",
    )
    publish_tolerance: float = Field(
        default=1.0,
        ge=0.0,
        description="publish: the most the dev Spearman x100 may fall below the latest version's.",
    )
    publish_gate_on: Literal["bi", "cross"] = Field(
        default="bi", description="publish: the model whose dev score the gate compares."
    )

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

    @field_validator("tests")
    @classmethod
    def _check_test_names(cls, value: dict[str, EvalFile]) -> dict[str, EvalFile]:
        reserved = {"dev", "stsb_dev", *TASKS, *BINARY_TASKS}
        for name in value:
            if name in reserved or not _NAME.match(name) or len(name) > 64:
                raise ValueError(
                    f"tests expects names of letters, digits, '.', '_' or '-' (at most 64) other than "
                    f"{sorted(reserved)}, got {name!r}; rename that test set."
                )
        return value

    @field_validator("plms")
    @classmethod
    def _check_plms(cls, value: list[PLMConfig]) -> list[PLMConfig]:
        names = [p.name for p in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"plms expects distinct names, got {repeated} more than once; rename them.")
        return value

    @property
    def binary_task(self) -> str | None:
        """The binary task whose pool, dev and test set the run uses (None: STS or the user's pairs)."""
        return self.pool if self.pairs is None and self.pool in BINARY_TASKS else None

    @property
    def mutual(self) -> bool:
        """Whether the PLMs share averaged labels (N ≥ 2)."""
        return len(self.plms) > 1


# -- presets: the one place where their settings are written ----------------------------------------
def quick_plm(
    *, packing: bool = True, fast: bool = False, bi_learning_rate: float = 2e-5, **fields: Any
) -> PLMConfig:
    """One PLM with the `quick` settings (README: why): bf16 CPU training on padding-free batches,
    lr 1e-4 cross, 1 bi epoch at `bi_learning_rate`. `fast` adds the opt-in speed options that change
    numbers by rounding or dropout masks only: fast dropout, fused AdamW, bf16 dev evaluations and
    bf16 scoring."""
    speed = {"fast_dropout": fast, "fused_optimizer": fast, "eval_autocast": fast}
    scoring: Precision = "auto" if fast else "fp32"
    cross = CrossEncoderConfig(
        symmetric_labels=True,
        eval_max_length=128,
        score_precision=scoring,
        fit=cross_fit_defaults(
            learning_rate=1e-4, eval_steps=100, precision="bf16", packing=packing, **speed
        ),
    )
    bi = BiEncoderConfig(
        score_precision=scoring,
        fit=bi_fit_defaults(
            learning_rate=bi_learning_rate,
            epochs=1,
            eval_steps=20,
            precision="bf16",
            packing=packing,
            **speed,
        ),
    )
    bi = bi.model_copy(update={"model": fields.pop("model")}) if "model" in fields else bi
    return PLMConfig(bi=bi, cross=cross, **fields)


QUICK_SHARED: dict[str, Any] = {
    "pool": "stsb",
    "cycles": 1,
    "select_start": True,
    "bi_label_calibration": "quantile",
    "checkpoint_steps": 100,
}


def paper_mutual_plms() -> list[PLMConfig]:
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


def binary_paper(task: str) -> dict[str, Any]:
    """The paper's binary-task setting (algorithm.md §1.7, Table 16): the task's pool, 5 cycles, cross
    3 epochs, bi 15 epochs, selection and test by ROC-AUC (the task's sets); QNLI's cross-encoder
    trains on one pair order only (its pairs are asymmetric)."""
    cross = CrossEncoderConfig(both_orders=BOTH_ORDERS[task], fit=cross_fit_defaults(epochs=3))
    plm = PLMConfig(bi=BiEncoderConfig(fit=bi_fit_defaults(epochs=15)), cross=cross)
    return {"run_name": task, "pool": task, "cycles": 5, "eval_tasks": [], "plms": [plm]}


def binary_quick(task: str) -> dict[str, Any]:
    """A CPU-sized binary run: the `quick` recipe (1 cycle, bf16, 1 bi epoch) on the task's pool.

    Padded batches: the MRPC rows in bench/results were measured so (`--set plms.bi.fit.packing=true
    --set plms.cross.fit.packing=true` computes the same up to dropout masks, faster)."""
    plm = quick_plm(packing=False)
    if not BOTH_ORDERS[task]:
        cross = plm.cross.model_copy(update={"both_orders": False, "symmetric_labels": False})
        plm = plm.model_copy(update={"cross": cross})
    return {**QUICK_SHARED, "run_name": task, "pool": task, "eval_tasks": [], "plms": [plm]}


PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    "paper": dict,
    # `quick` is the demo: every speed option on (README, "make demo"); quick-mutual and quick-mrpc keep
    # the settings their README numbers were measured with.
    "quick": lambda: {**QUICK_SHARED, "plms": [quick_plm(fast=True)]},
    "paper-mutual": lambda: {"run_name": "mutual", "plms": paper_mutual_plms()},
    "quick-mutual": lambda: {
        **QUICK_SHARED,
        "run_name": "mutual",
        # MiniLM's bi-encoder learns from the averaged (mostly MPNet-quality) labels at 5e-5: +0.40
        # over 2e-5 on the 6-task mean of seeds 2021 and 1 (README, "Mutual distillation").
        "plms": [
            quick_plm(name="minilm", bi_learning_rate=5e-5),
            quick_plm(name="mpnet", model="packaged-mpnet"),
        ],
    },
    **{f"paper-{task}": (lambda t=task: binary_paper(t)) for task in BINARY_TASKS},
    "quick-mrpc": lambda: binary_quick("mrpc"),
}


def preset_config(preset: str = "paper", **overrides: Any) -> DistillConfig:
    """The config of a preset with field overrides applied (overrides win)."""
    if preset not in PRESETS:
        raise ValueError(f"preset expects one of {sorted(PRESETS)}, got {preset!r}.")
    return DistillConfig(**{**PRESETS[preset](), **overrides})


SINGLE_PLM_FIELDS = ("bi", "cross", "init_method", "device")


def single_plm_config(**fields: Any) -> DistillConfig:
    """A self-distillation config from the flat fields of one PLM (bi, cross, init_method, device)
    next to the shared ones: the shape of the `self-distill` command and of a single-model job."""
    plm = {k: fields.pop(k) for k in SINGLE_PLM_FIELDS if k in fields}
    return DistillConfig(**fields, plms=[PLMConfig(**plm)])
