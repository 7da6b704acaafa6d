"""Stages that only mutual distillation needs (paper §2, mutual distillation; algorithm.md §1.6).

* `average_labels`: join several models' labels tables on `pair_id` and commit their mean
  (`average_bi_scores` / `average_cross_scores` in the store).
* `evaluate_ensemble`: Spearman × 100 of the mean of several models' scores (Table 1's "ensemble"
  rows: mean of cosines for bi-encoders, mean of probabilities for cross-encoders).
* `visible_gpus`, `assign_devices`: one device per PLM ("auto" → cuda:i round-robin on a machine
  with several GPUs).

The per-PLM stages themselves are the self-distillation ones (tasks/distill.py, tasks/init_stage.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from tasks.artifacts import LABELS_FILE, load_bi, load_cross, read_table, write_table
from tasks.distill import DEV_TASK, write_results
from tasks.stages import pipeline_task, run_stage
from tasks.store import Store
from trans_encoder_core.benchmarks import available_tasks, load_stsb, load_task
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig
from trans_encoder_core.ensemble import average_labels as core_average_labels
from trans_encoder_core.evaluation import Scorer, bi_scorer, cross_scorer, ensemble_scorer, evaluate_scorer
from trans_encoder_core.runtime import resolve_device

Kind = Literal["bi", "cross"]


@pipeline_task
def average_labels(
    store_root: str, labels: dict[str, dict[str, Any]], kind: Kind, cycle: int = 1
) -> dict[str, Any]:
    """Mean of the PLMs' `kind` labels of one cycle, as a new labels table (per-model columns kept)."""
    store = Store(store_root)
    stage = f"average_{kind}_scores"
    inputs = {name: result["digest"] for name, result in labels.items()}

    def compute(folder: Path, key: str) -> dict[str, Any]:
        tables = {name: read_table(store, result["uri"], LABELS_FILE) for name, result in labels.items()}
        averaged = core_average_labels(tables)
        lineage = {
            "stage": stage,
            "cycle": cycle,
            "key": key,
            "inputs": {name: _relative(store, result["uri"]) for name, result in sorted(labels.items())},
        }
        write_table(averaged.table, folder, LABELS_FILE, lineage)
        return {"labels": _stats(averaged.metrics), **averaged.metrics}

    return run_stage(store, stage, cycle, {"kind": kind, "models": sorted(labels)}, inputs, compute)


def _relative(store: Store, uri: str) -> str:
    """A stage URI relative to the store root, so equal tables are equal bytes in any store."""
    return uri[len(store.root) + 1 :] if store.contains(uri) else uri


def _stats(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The label statistics that self-distillation's report shows for every labels table."""
    return {"mean": metrics["mean"], "std": metrics["std"], "n": metrics["n"]}


def _scorer(
    store: Store,
    model: dict[str, str],
    kind: Kind,
    bi: BiEncoderConfig,
    cross: CrossEncoderConfig,
    device: str,
) -> Scorer:
    dev = resolve_device(device)
    if kind == "bi":
        enc = load_bi(store, model["ref"], pooling=bi.pooling, max_seq_length=bi.max_seq_length, device=dev)
        return bi_scorer(enc, batch_size=bi.score_batch_size)
    enc = load_cross(store, model["ref"], max_length=cross.max_length, device=dev)
    return cross_scorer(enc, batch_size=cross.score_batch_size, max_length=cross.eval_max_length)


def _benchmark_sets(root: str, tasks: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    availability = available_tasks(root)
    missing = {t: reason for t in tasks if (reason := availability.get(t))}
    sets = {t: load_task(root, t) for t in tasks if t not in missing}
    if availability.get("stsb") is None:
        sets[DEV_TASK] = load_stsb(root, "dev")
    return sets, missing


@pipeline_task
def evaluate_ensemble(
    store_root: str,
    models: dict[str, dict[str, str]],
    kind: Kind,
    data: dict[str, str] | None,
    tasks: list[str],
    bis: dict[str, BiEncoderConfig],
    crosses: dict[str, CrossEncoderConfig],
    devices: dict[str, str],
    cycle: int = 0,
) -> dict[str, Any]:
    """Spearman × 100 of the unweighted mean of `models`' scores on every available benchmark."""
    store = Store(store_root)
    names = sorted(models)
    config = {
        "kind": kind,
        "tasks": sorted(tasks),
        "lengths": [bis[n].max_seq_length if kind == "bi" else crosses[n].eval_max_length for n in names],
        "pooling": [bis[n].pooling if kind == "bi" else None for n in names],
    }
    inputs = {f"model:{n}": models[n]["digest"] for n in names} | {"data": data["digest"] if data else "none"}

    def compute(folder: Path, key: str) -> dict[str, Any]:
        if data is None:
            results, missing = (
                {},
                {t: "no benchmark folder (set TRANS_ENCODER_DATA or --data)" for t in tasks},
            )
        else:
            scorers = [_scorer(store, models[n], kind, bis[n], crosses[n], devices[n]) for n in names]
            sets, missing = _benchmark_sets(data["data"], tasks)
            results = evaluate_scorer(ensemble_scorer(scorers), sets)
        return write_results(folder, results, missing, tasks, models=names)

    return run_stage(store, f"evaluate_{kind}_ensemble", cycle, config, inputs, compute)


def visible_gpus() -> int:
    """The number of CUDA devices this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def assign_devices(devices: list[str], *, spread: bool) -> list[str]:
    """One device per PLM: with `spread` and n ≥ 2 visible GPUs, PLM i's "auto" becomes cuda:(i mod n).

    Without `spread` (e.g. on a Dask cluster, where each worker picks its own GPU) or with at most one
    GPU, "auto" is left for each stage to resolve; explicit devices are never changed.
    """
    count = visible_gpus() if spread else 0
    if count < 2:
        return list(devices)
    return [f"cuda:{i % count}" if d == "auto" else d for i, d in enumerate(devices)]
