"""Stage `evaluate`: the scores × 100 of one model, or of the mean of several models' scores (Table 1's
ensemble rows: mean of cosines for bi-encoders, of probabilities for cross-encoders), on every
available benchmark and STS-B dev (Spearman), and on the run's own sets (a dev file, which then
replaces STS-B dev, test files, a binary task's sets) with the metric each one's labels call for. A
single model is an ensemble of one; its key is the one the single-model stage always had, and the
own sets enter it only when there are any (tasks/keys.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks import keys
from tasks.artifacts import RESULTS_FILE, load_encoder
from tasks.eval_sets import DEV, load_eval_set
from tasks.inputs import score_precision
from tasks.stages import pipeline_task, run_stage, stage_key
from tasks.store import Store
from trans_encoder_core.benchmarks import LabelledPairs, available_tasks, load_stsb, load_task
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig
from trans_encoder_core.evaluation import (
    Scorer,
    bi_scorer,
    cross_scorer,
    ensemble_scorer,
    mean_scores,
    score_sets,
    set_metrics,
)
from trans_encoder_core.metrics import mean_over_present
from trans_encoder_core.runtime import resolve_device

Kind = Literal["bi", "cross"]
DEV_TASK = "stsb_dev"
PREDICTIONS_FILE = "scores.parquet"
logger = logging.getLogger(__name__)


def dev_score(results: dict[str, float]) -> float | None:
    """The dev score of an evaluation's results: the run's own dev set if it has one, else STS-B dev."""
    return results.get(DEV, results.get(DEV_TASK))


NO_DATA = "no benchmark folder (set TRANS_ENCODER_DATA or --data)"


def set_average(results: dict[str, float], tasks: list[str], tests: dict[str, str]) -> float | None:
    """The mean over the benchmarks of `tasks` present (the paper's Avg.); without any, the mean over
    the run's own test sets (`tests`: name -> metric) when they share one metric (Table 11's avg)."""
    average = mean_over_present(results, tasks)
    if average is None and tests and len(set(tests.values())) == 1:
        average = mean_over_present(results, list(tests))
    return average


def write_results(
    folder: Path,
    results: dict[str, float],
    missing: Any,
    tasks: list[str],
    metrics: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An evaluation's results.json: the score per set, what is missing, the average over `tasks`;
    with the run's own sets also `metrics` (set name -> "spearman" or "roc_auc")."""
    tests = {n: m for n, m in (metrics or {}).items() if n not in (*tasks, DEV, DEV_TASK)}
    payload = {
        **extra,
        **({"metrics": metrics} if metrics else {}),
        "tasks": results,
        "missing": missing,
        "average": set_average(results, tasks, tests),
        "complete": not missing,
    }
    (folder / RESULTS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
    return payload


def benchmark_sets(
    root: str, tasks: list[str], stsb_dev: bool = True
) -> tuple[dict[str, LabelledPairs], dict[str, str]]:
    """The test sets of `tasks` present under `root` (plus STS-B dev unless `stsb_dev` is False), and
    why the others are missing."""
    availability = available_tasks(root)
    missing = {t: reason for t in tasks if (reason := availability.get(t))}
    sets = {t: load_task(root, t) for t in tasks if t not in missing}
    if stsb_dev and availability.get("stsb") is None:
        sets[DEV_TASK] = load_stsb(root, "dev")
    return sets, missing


def predictions_uri(store: Store, key: str) -> str:
    """Where a single model's evaluation keeps its per-pair scores: beside the stages, not in the
    artifact (whose files, and so digests, stay what they were), for ensembles to reuse."""
    return store.uri("predictions", "evaluate", key, PREDICTIONS_FILE)


def save_predictions(store: Store, key: str, scores: dict[str, np.ndarray]) -> None:
    """Write one evaluation's scores per set (columns `set`, `score`, sets one after another)."""
    names = list(scores)
    table = pa.table(
        {
            "set": pa.array(np.repeat(names, [len(scores[n]) for n in names]).astype(str)),
            "score": pa.array(np.concatenate([np.asarray(scores[n]) for n in names])),
        }
    )
    store.write_with(predictions_uri(store, key), lambda path: pq.write_table(table, path))


def load_predictions(store: Store, key: str, sets: dict[str, LabelledPairs]) -> dict[str, np.ndarray] | None:
    """The saved scores of the evaluation `key` for exactly `sets` (each set's scored rows), or None
    when there are none or they do not fit (an older store, a torn file): then the ensemble scores
    again."""
    uri = predictions_uri(store, key)
    try:
        if not store.exists(uri):
            return None
        table = pq.read_table(pa.BufferReader(store.read_bytes(uri)))
        column, score = table.column("set").to_numpy(zero_copy_only=False), table.column("score").to_numpy()
        out = {name: score[column == name] for name in sets}
    except Exception as exc:  # noqa: BLE001 - a cache: anything unreadable is recomputed
        logger.warning("ignoring unreadable predictions %s: %s", uri, exc)
        return None
    if set(np.unique(column)) != set(sets) or any(len(out[n]) != len(sets[n].scored()) for n in sets):
        return None
    return out


def _precisions(
    kind: Kind,
    names: list[str],
    bis: dict[str, BiEncoderConfig],
    crosses: dict[str, CrossEncoderConfig],
    devices: dict[str, str],
) -> dict[str, tuple[str, str | None]]:
    """Each model's scoring precision and its key part (`tasks.inputs.score_precision`)."""
    configs = bis if kind == "bi" else crosses
    return {n: score_precision(configs[n].score_precision, resolve_device(devices[n])) for n in names}


def _scorer(
    store: Store,
    ref: str,
    kind: Kind,
    bi: BiEncoderConfig,
    cross: CrossEncoderConfig,
    device: str,
    precision: str = "fp32",
) -> Scorer:
    config = bi if kind == "bi" else cross
    enc = load_encoder(store, ref, kind, config, resolve_device(device))
    if kind == "bi":
        return bi_scorer(enc, batch_size=bi.score_batch_size, precision=precision)
    return cross_scorer(
        enc, batch_size=cross.score_batch_size, max_length=cross.eval_max_length, precision=precision
    )


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
    sets: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Spearman × 100 of the unweighted mean of `models`' scores (one model: its own scores) on the
    benchmarks, and on the run's own `sets` (name -> reference, `tasks.eval_sets`) with their metrics;
    an own set named "dev" replaces STS-B dev, which is then not read."""
    store = Store(store_root)
    names = sorted(models)
    precision = _precisions(kind, names, bis, crosses, devices)
    precision_keys = {n: p[1] for n, p in precision.items()}
    stage, config, inputs = keys.evaluate(kind, tasks, models, bis, crosses, data, sets, precision_keys)

    def scores_of(sets_: dict[str, LabelledPairs], key: str) -> dict[str, np.ndarray]:
        """One model: score and save its scores. An ensemble: the mean of its members' saved scores
        when every member's own evaluation in this run left them (the same numbers, no model
        loaded), else the mean of scoring with each member again."""
        if len(names) > 1:
            member_keys = [
                stage_key(
                    *keys.evaluate(kind, tasks, {n: models[n]}, bis, crosses, data, sets, precision_keys)
                )
                for n in names
            ]
            members = [load_predictions(store, k, sets_) for k in member_keys]
            if all(m is not None for m in members):
                logger.info("ensemble of %s: mean of the members' saved scores", ", ".join(names))
                return {name: mean_scores([m[name] for m in members]) for name in sets_}
        scorers = [
            _scorer(store, models[n]["ref"], kind, bis[n], crosses[n], devices[n], precision[n][0])
            for n in names
        ]
        scores = score_sets(scorers[0] if len(scorers) == 1 else ensemble_scorer(scorers), sets_)
        if len(names) == 1:
            save_predictions(store, key, scores)
        return scores

    def compute(folder: Path, key: str) -> dict[str, Any]:
        own = {name: load_eval_set(ref) for name, ref in (sets or {}).items()}
        if data is None:
            bench, missing = {}, dict.fromkeys(tasks, NO_DATA)
        else:
            bench, missing = benchmark_sets(data["data"], tasks, stsb_dev=DEV not in own)
        results = set_metrics(scores_of(bench | own, key), bench | own) if bench or own else {}
        metrics = {n: getattr(s, "metric", "spearman") for n, s in (bench | own).items()} if own else None
        extra: dict[str, Any] = {"models": names} if len(names) > 1 else {}
        if any(precision_keys.values()):
            extra["precisions"] = {n: p[0] for n, p in precision.items()}
        return write_results(folder, results, missing, tasks, metrics, **extra)

    return run_stage(store, stage, cycle, config, inputs, compute)
