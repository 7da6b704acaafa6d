"""Single-step flows: evaluate one model (the distillation's cached `evaluate` stage), score one pair file."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Literal

import fsspec
import pyarrow.parquet as pq
from prefect import flow

from tasks.artifacts import local_model_path
from tasks.evaluate import DEV_TASK, evaluate
from tasks.ingest import read_source_bytes
from tasks.inputs import benchmark_inputs, benchmark_root, fingerprint_model
from tasks.store import Store
from trans_encoder_core.benchmarks import DATA_ENV_VAR, TASKS
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.errors import ConfigError
from trans_encoder_core.evaluation import bi_scorer, cross_scorer
from trans_encoder_core.pair_files import read_pairs
from trans_encoder_core.runtime import resolve_device
from trans_encoder_core.schema import labels_table, with_lineage

Kind = Literal["bi", "cross"]


def _model_path(model: str, store: str | None) -> str:
    if "://" in model and store is None:
        store = model.split("/stages/")[0] if "/stages/" in model else None
    if store is not None:
        st = Store(store)
        if st.contains(model):
            return str(local_model_path(st, model))
    return model


def load_scorer(
    model: str, kind: Kind, *, store: str | None, max_length: int | None, device: str, symmetric: bool = False
) -> Any:
    path = _model_path(model, store)
    dev = resolve_device(device)
    if kind == "bi":
        enc = BiEncoder.from_pretrained(path, max_seq_length=max_length or 32).to(dev)
        return bi_scorer(enc)
    cross = CrossEncoder.from_pretrained(path).to(dev)
    if symmetric:
        from trans_encoder_core.scoring import cross_scores

        return lambda a, b: cross_scores(cross, a, b, max_length=max_length, symmetric=True)
    return cross_scorer(cross, max_length=max_length)


def require_benchmarks(data: str | None) -> str:
    """The benchmark folder `evaluate` reads (`data`, else $TRANS_ENCODER_DATA); a `ConfigError` if
    there is none."""
    root = benchmark_root(data)
    if not root or not Path(root).is_dir():
        raise ConfigError(
            f"evaluate expects a benchmark folder, got {root!r}; pass --data DIR or set {DATA_ENV_VAR} "
            "(layout: data/README.md)."
        )
    return root


@flow(name="evaluate")
def evaluate_model(
    model: str,
    kind: Kind = "bi",
    data: str | None = None,
    store: str | None = None,
    tasks: list[str] | None = None,
    max_length: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Spearman × 100 of a bi- or cross-encoder on every available benchmark and STS-B dev.

    The same cached `evaluate` stage as a distillation run's: the result is stored under `store`
    (default ./te-store) and comes back cached for the same model, settings and benchmark files.
    """
    root = require_benchmarks(data)
    wanted = list(tasks or TASKS)
    if store is None and "/stages/" in model:  # a stage artifact: evaluate it in its own store
        store = model.split("/stages/")[0]
    store_root = Store(store or "./te-store").root
    bi = BiEncoderConfig(model=model, **({"max_seq_length": max_length} if max_length else {}))
    cross = CrossEncoderConfig(model=model, **({"eval_max_length": max_length} if max_length else {}))
    ref = fingerprint_model(store_root, model)
    inputs = benchmark_inputs(root, wanted)
    result = evaluate(
        store_root,
        {"model": ref},
        kind,
        inputs["data"],
        wanted,
        {"model": bi},
        {"model": cross},
        {"model": device or "auto"},
    )
    scores = dict(result["metrics"]["tasks"])
    return {
        "model": model,
        "kind": kind,
        "tasks": {t: v for t, v in scores.items() if t != DEV_TASK},
        "dev": scores.get(DEV_TASK),
        "average": result["metrics"]["average"],
        "missing": result["metrics"]["missing"],
        "uri": result["uri"],
        "cached": result["cached"],
    }


@flow(name="score")
def score_file(
    pairs: str,
    model: str,
    kind: Kind = "bi",
    out: str = "scores.parquet",
    store: str | None = None,
    max_length: int | None = None,
    device: str | None = None,
    symmetric: bool = False,
) -> dict[str, Any]:
    """Score every pair of a file with one model and write a labels Parquet table."""
    result = read_pairs(io.BytesIO(read_source_bytes(pairs)), name=pairs)
    scorer = load_scorer(
        model, kind, store=store, max_length=max_length, device=device or "auto", symmetric=symmetric
    )
    table = result.table
    scores = scorer(table["sentence1"].to_pylist(), table["sentence2"].to_pylist())
    labelled = with_lineage(
        labels_table(table, scores), {"stage": "score", "model": model, "kind": kind, "source": pairs}
    )
    if os.path.exists(out):
        raise ConfigError(f"score refuses to overwrite {out}; choose another --out or remove it first.")
    with fsspec.open(out, "wb") as fh:
        pq.write_table(labelled, fh)
    return {"out": out, "rows": table.num_rows}
