"""Single-step flows: evaluate one model, score one pair file."""

from __future__ import annotations

import io
import os
from typing import Any, Literal

import fsspec
import pyarrow.parquet as pq
from prefect import flow

from tasks.artifacts import local_model_path
from tasks.ingest import read_source_bytes
from tasks.store import Store
from trans_encoder_core.benchmarks import DATA_ENV_VAR, TASKS, available_tasks, load_stsb, load_task
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.evaluation import bi_scorer, cross_scorer, evaluate_scorer
from trans_encoder_core.metrics import mean_over_present
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
    """Spearman × 100 of a bi- or cross-encoder on every available benchmark and STS-B dev."""
    root = data or os.environ.get(DATA_ENV_VAR)
    wanted = list(tasks or TASKS)
    if not root:
        raise SystemExit(f"evaluate expects a benchmark folder: pass --data DIR or set {DATA_ENV_VAR}.")
    availability = available_tasks(root)
    missing = {t: r for t in wanted if (r := availability.get(t))}
    scorer = load_scorer(model, kind, store=store, max_length=max_length, device=device or "auto")
    sets = {t: load_task(root, t) for t in wanted if t not in missing}
    results = evaluate_scorer(scorer, sets)
    dev = evaluate_scorer(scorer, {"stsb_dev": load_stsb(root, "dev")}) if "stsb" in sets else {}
    return {
        "model": model,
        "kind": kind,
        "tasks": results,
        "dev": dev.get("stsb_dev"),
        "average": mean_over_present(results, wanted),
        "missing": missing,
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
        raise SystemExit(f"score refuses to overwrite {out}; choose another --out or remove it first.")
    with fsspec.open(out, "wb") as fh:
        pq.write_table(labelled, fh)
    return {"out": out, "rows": table.num_rows}
