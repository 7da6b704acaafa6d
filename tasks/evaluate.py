"""Stage `evaluate`: Spearman × 100 of one model, or of the mean of several models' scores (Table 1's
ensemble rows: mean of cosines for bi-encoders, of probabilities for cross-encoders), on every
available benchmark and STS-B dev. A single model is an ensemble of one; its key is the one the
single-model stage always had (tasks/keys.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from tasks import keys
from tasks.artifacts import RESULTS_FILE, load_encoder
from tasks.stages import pipeline_task, run_stage
from tasks.store import Store
from trans_encoder_core.benchmarks import LabelledPairs, available_tasks, load_stsb, load_task
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig
from trans_encoder_core.evaluation import Scorer, bi_scorer, cross_scorer, ensemble_scorer, evaluate_scorer
from trans_encoder_core.metrics import mean_over_present
from trans_encoder_core.runtime import resolve_device

Kind = Literal["bi", "cross"]
DEV_TASK = "stsb_dev"
NO_DATA = "no benchmark folder (set TRANS_ENCODER_DATA or --data)"


def write_results(
    folder: Path, results: dict[str, float], missing: Any, tasks: list[str], **extra: Any
) -> dict[str, Any]:
    """An evaluation's results.json: Spearman per task, what is missing, the average over `tasks`."""
    payload = {
        **extra,
        "tasks": results,
        "missing": missing,
        "average": mean_over_present(results, tasks),
        "complete": not missing,
    }
    (folder / RESULTS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
    return payload


def benchmark_sets(root: str, tasks: list[str]) -> tuple[dict[str, LabelledPairs], dict[str, str]]:
    """The test sets of `tasks` present under `root` (plus STS-B dev), and why the others are missing."""
    availability = available_tasks(root)
    missing = {t: reason for t in tasks if (reason := availability.get(t))}
    sets = {t: load_task(root, t) for t in tasks if t not in missing}
    if availability.get("stsb") is None:
        sets[DEV_TASK] = load_stsb(root, "dev")
    return sets, missing


def _scorer(
    store: Store, ref: str, kind: Kind, bi: BiEncoderConfig, cross: CrossEncoderConfig, device: str
) -> Scorer:
    config = bi if kind == "bi" else cross
    enc = load_encoder(store, ref, kind, config, resolve_device(device))
    if kind == "bi":
        return bi_scorer(enc, batch_size=bi.score_batch_size)
    return cross_scorer(enc, batch_size=cross.score_batch_size, max_length=cross.eval_max_length)


@pipeline_task
def evaluate(
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
    """Spearman × 100 of the unweighted mean of `models`' scores (one model: its own scores)."""
    store = Store(store_root)
    names = sorted(models)
    stage, config, inputs = keys.evaluate(kind, tasks, models, bis, crosses, data)

    def compute(folder: Path, key: str) -> dict[str, Any]:
        if data is None:
            results, missing = {}, dict.fromkeys(tasks, NO_DATA)
        else:
            scorers = [_scorer(store, models[n]["ref"], kind, bis[n], crosses[n], devices[n]) for n in names]
            sets, missing = benchmark_sets(data["data"], tasks)
            results = evaluate_scorer(scorers[0] if len(scorers) == 1 else ensemble_scorer(scorers), sets)
        extra = {"models": names} if len(names) > 1 else {}
        return write_results(folder, results, missing, tasks, **extra)

    return run_stage(store, stage, cycle, config, inputs, compute)
