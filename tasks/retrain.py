"""Stages of scheduled retraining: read the inbox and registry, merge new pairs into the pool, and
publish the retrained models as a registry version (then record the ingested files in the ledger)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import PAIRS_FILE, read_table, write_table
from tasks.inbox import pending_files, read_file_bytes, record_ingested
from tasks.registry import gate, list_versions, publish_version, read_latest
from tasks.stages import pipeline_task, run_stage
from tasks.store import Store, digest_json
from trans_encoder_core.pair_files import read_pairs
from trans_encoder_core.pairs import merge_pair_tables


@task(cache_policy=NO_CACHE, persist_result=False)
def retrain_state(store_root: str) -> dict[str, Any]:
    """The latest registry version, the pending inbox files and the number the next version gets."""
    store = Store(store_root)
    latest = read_latest(store)
    done = latest.get("inbox", []) if latest else []
    return {
        "latest": latest,
        "pending": pending_files(store, done),
        "next_version": max(list_versions(store), default=0) + 1,
    }


def _read_new_pairs(data: bytes, name: str, options: dict[str, Any]) -> Any:
    return read_pairs(
        io.BytesIO(data),
        name=name,
        sentence1_column=options["sentence1_column"],
        sentence2_column=options["sentence2_column"],
        on_invalid=options["on_invalid"],
    ).table


@pipeline_task
def merge_pool(
    store_root: str,
    base: dict[str, Any] | None,
    initial: str | None,
    files: list[dict[str, str]],
    options: dict[str, Any],
) -> dict[str, Any]:
    """Merge the previous pool, the initial pair file and new inbox files into a new pool artifact.

    The pool keeps the first occurrence of each `pair_id` (previous pool first, then files by name), so
    pairs already trained on keep their place and re-sent pairs are not duplicated. `options` holds
    `sentence1_column`, `sentence2_column` and `on_invalid` for reading the new files.
    """
    store = Store(store_root)
    sources = [(f["name"], store.read_bytes(f["uri"])) for f in files]
    ingested = [
        {**f, "sha256": hashlib.sha256(data).hexdigest()} for f, (_, data) in zip(files, sources, strict=True)
    ]
    if initial is not None:
        sources.insert(0, (Path(initial).name, read_file_bytes(initial)))
    digests = [[name, hashlib.sha256(data).hexdigest()] for name, data in sources]
    inputs = {"base": base["digest"] if base else "none", "sources": digest_json(digests)}

    def compute(folder: Path, key: str) -> dict[str, Any]:
        tables = [read_table(store, base["uri"], PAIRS_FILE)] if base else []
        n_base = tables[0].num_rows if tables else 0
        tables += [_read_new_pairs(data, name, options) for name, data in sources]
        merged, duplicates = merge_pair_tables(tables)
        lineage = {"stage": "merge_pool", "base": base["uri"] if base else None, "files": digests, "key": key}
        write_table(merged, folder, PAIRS_FILE, lineage)
        return {
            "n_pairs": merged.num_rows,
            "n_base": n_base,
            "n_new": merged.num_rows - n_base,
            "n_duplicates": duplicates,
        }

    result = run_stage(store, "merge_pool", 0, {"kind": "merge", **options}, inputs, compute)
    result["files"] = ingested
    result["pairs_uri"] = f"{result['uri']}/{PAIRS_FILE}"
    return result


def best_per_kind(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For bi and cross, the selected model of the PLM that is best on dev (one PLM: its own)."""
    chosen = {}
    for kind in ("bi", "cross"):
        entries = [m["best"][kind] for m in summary["models"].values()]
        chosen[kind] = max(entries, key=lambda e: e["dev"] if e["dev"] is not None else float("-inf"))
    return chosen


def model_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The scores of the models a version publishes (`best_per_kind`), with each set's metric."""
    keys = ("cycle", "dev", "test", "average", "metrics")
    return {kind: {k: entry[k] for k in keys if k in entry} for kind, entry in best_per_kind(summary).items()}


def same_dev_set(dev_set: dict[str, Any] | None, latest: dict[str, Any] | None) -> bool:
    """Whether the run's dev scores compare with the latest version's: the same dev set (by digest);
    a version from before dev sets were recorded was selected on STS-B dev."""
    if latest is None:
        return True
    theirs = latest.get("dev_set")
    if theirs is None:
        return dev_set is None or dev_set.get("name") == "stsb_dev"
    return dev_set is not None and dev_set.get("digest") == theirs.get("digest")


@task(cache_policy=NO_CACHE, persist_result=False)
def publish_run(
    store_root: str, summary: dict[str, Any], pool: dict[str, Any], *, tolerance: float, gate_on: str
) -> dict[str, Any]:
    """Publish a distillation run's selected models as a registry version (`DistillConfig.publish`),
    with the retrain's dev gate against the latest version; a rerun whose models are already the
    latest version's publishes nothing new."""
    from prefect.runtime import flow_run

    store = Store(store_root)
    latest = read_latest(store)
    models = {kind: entry["model"] for kind, entry in best_per_kind(summary).items()}
    if latest is not None and latest.get("models") == models:
        reason = f"these models are already registry version {latest['version']}"
        return {"decision": {"publish": False, "reason": reason}, "version": latest["version"]}
    run = {
        "name": summary["run_name"],
        "summary": summary.get("summary_uri"),
        "flow_run_id": str(flow_run.id) if flow_run.id else None,
    }
    return publish_selected(
        store_root, summary, {**pool, "files": []}, latest, tolerance=tolerance, gate_on=gate_on, run=run
    )


def publish_selected(
    store_root: str,
    summary: dict[str, Any],
    pool: dict[str, Any],
    latest: dict[str, Any] | None,
    *,
    tolerance: float,
    gate_on: str,
    run: dict[str, Any],
) -> dict[str, Any]:
    """Publish the run's selected models as a new version if they pass the dev gate, then record the
    ingested inbox files (`pool["files"]`) in the ledger (never before: a failed or rejected run
    leaves them pending)."""
    store = Store(store_root)
    metrics = model_metrics(summary)
    current = ((latest or {}).get("metrics", {}).get(gate_on) or {}).get("dev")
    dev_set = (summary.get("eval_sets") or {}).get("dev")
    comparable = same_dev_set(dev_set, latest)
    decision = gate(metrics[gate_on]["dev"], current if comparable else None, tolerance)
    if not comparable and latest is not None:
        reason = "dev set differs from the latest version's: its score is not compared"
        decision = dataclasses.replace(decision, reason=reason, current=current)
    outcome: dict[str, Any] = {"decision": decision.as_dict(), "version": None}
    if not decision.publish:
        return outcome
    record = {
        "models": {kind: entry["model"] for kind, entry in best_per_kind(summary).items()},
        "plms": {
            name: {kind: m["best"][kind]["model"] for kind in ("bi", "cross")}
            for name, m in summary["models"].items()
        },
        "metrics": metrics,
        "pool": {"uri": pool["uri"], "digest": pool["digest"], "pairs": pool["metrics"]["n_pairs"]},
        "config": summary["config"],
        "inbox": [f["name"] for f in pool["files"]] + (latest.get("inbox", []) if latest else []),
        "new_files": [f["name"] for f in pool["files"]],
        "gate": decision.as_dict(),
        "dev_set": dev_set,
        "run": run,
    }
    stored = publish_version(store, record)
    if pool["files"]:
        record_ingested(store, pool["files"], version=stored["version"], run=run.get("flow_run_id"))
    outcome["version"] = stored["version"]
    outcome["record"] = stored
    return outcome


# The retrain's publishing step as a task of its own (its run in the UI says what it decided).
publish_candidate = task(
    publish_selected, name="publish_candidate", cache_policy=NO_CACHE, persist_result=False
)
