"""What mutual distillation adds to the cycle (paper §2, mutual distillation; algorithm.md §1.6).

* `average_labels`: join several models' labels tables on `pair_id` and commit their mean
  (`average_bi_scores` / `average_cross_scores` in the store).
* `visible_gpus`, `assign_devices`: one device per PLM ("auto" → cuda:i round-robin on a machine
  with several GPUs).

Every other stage is the same for one PLM and for several (tasks/distill.py, tasks/evaluate.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from tasks import keys
from tasks.artifacts import LABELS_FILE, read_table, write_table
from tasks.stages import pipeline_task, run_stage
from tasks.store import Store
from trans_encoder_core.ensemble import average_labels as core_average_labels

Kind = Literal["bi", "cross"]


@pipeline_task
def average_labels(
    store_root: str, labels: dict[str, dict[str, Any]], kind: Kind, cycle: int = 1
) -> dict[str, Any]:
    """Mean of the PLMs' `kind` labels of one cycle, as a new labels table (per-model columns kept)."""
    store = Store(store_root)
    stage = f"average_{kind}_scores"

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

    return run_stage(store, stage, cycle, *keys.average_labels(kind, labels), compute)


def _relative(store: Store, uri: str) -> str:
    """A stage URI relative to the store root, so equal tables are equal bytes in any store."""
    return uri[len(store.root) + 1 :] if store.contains(uri) else uri


def _stats(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The label statistics that self-distillation's report shows for every labels table."""
    return {"mean": metrics["mean"], "std": metrics["std"], "n": metrics["n"]}


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
