"""Model selection and the run report: summary.json in the store plus Prefect artifacts."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.distill import DEV_TASK
from tasks.store import Store


def select_best(
    cycles: list[dict[str, Any]], start_eval: dict[str, Any], *, dev_selection: bool, select_start: bool
) -> dict[str, int]:
    """Best cycle per formulation by dev Spearman (cycle 0 = the starting bi-encoder)."""
    if not dev_selection or not cycles:
        last = len(cycles)
        return {"bi": last, "cross": last}
    best: dict[str, int] = {}
    for kind in ("bi", "cross"):
        scores = {c["cycle"]: c[kind]["metrics"].get("dev") or float("-inf") for c in cycles}
        if kind == "bi" and select_start:
            scores[0] = start_eval["metrics"]["tasks"].get(DEV_TASK, float("-inf"))
        best[kind] = max(scores, key=lambda c: (scores[c], -c))
    return best


def _model_entry(model: str, cycle: int, evaluation: dict[str, Any]) -> dict[str, Any]:
    tasks = dict(evaluation["metrics"]["tasks"])
    dev = tasks.pop(DEV_TASK, None)
    return {
        "model": model,
        "cycle": cycle,
        "dev": dev,
        "test": tasks,
        "average": evaluation["metrics"]["average"],
        "missing": evaluation["metrics"]["missing"],
    }


def build_summary(
    cfg: Any,
    stages: list[dict[str, Any]],
    cycles: list[dict[str, Any]],
    start_eval: dict[str, Any],
    finals: dict[str, dict[str, Any]],
    best: dict[str, int],
    data: dict[str, Any],
) -> dict[str, Any]:
    start_ref = cfg.bi.model
    models = {0: start_ref} | {c["cycle"]: c for c in cycles}
    best_models = {}
    for kind in ("bi", "cross"):
        model = start_ref if best[kind] == 0 else models[best[kind]][kind]["uri"]
        best_models[kind] = _model_entry(model, best[kind], finals[kind])
    return {
        "run_name": cfg.run_name,
        "config": cfg.model_dump(mode="json"),
        "stages": [
            {
                "name": s["name"],
                "cycle": s["cycle"],
                "cached": s["cached"],
                "seconds": s["seconds"],
                "uri": s["uri"],
            }
            for s in stages
        ],
        "cycles": [
            {
                "cycle": c["cycle"],
                "bi": {"dev": c["bi"]["metrics"].get("dev"), "model": c["bi"]["uri"]},
                "cross": {"dev": c["cross"]["metrics"].get("dev"), "model": c["cross"]["uri"]},
                "labels": {
                    "bi": c["bi_labels"]["metrics"]["labels"],
                    "cross": c["cross_labels"]["metrics"]["labels"],
                },
            }
            for c in cycles
        ],
        "start": {"bi": _model_entry(start_ref, 0, start_eval)},
        "best": best_models,
        "data": {"missing": data.get("missing") or {}, "reason": data.get("reason")},
        "all_cached": all(s["cached"] for s in stages),
        "versions": {
            "trans-encoder": metadata.version("trans-encoder"),
            "python": platform.python_version(),
            "torch": metadata.version("torch"),
            "transformers": metadata.version("transformers"),
        },
    }


def _table_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        {
            "model": "start bi",
            "cycle": 0,
            "dev": summary["start"]["bi"]["dev"],
            **summary["start"]["bi"]["test"],
            "avg": summary["start"]["bi"]["average"],
        }
    ]
    for c in summary["cycles"]:
        rows.append({"model": "bi", "cycle": c["cycle"], "dev": c["bi"]["dev"]})
        rows.append({"model": "cross", "cycle": c["cycle"], "dev": c["cross"]["dev"]})
    for kind in ("bi", "cross"):
        entry = summary["best"][kind]
        rows.append(
            {
                "model": f"best {kind}",
                "cycle": entry["cycle"],
                "dev": entry["dev"],
                **entry["test"],
                "avg": entry["average"],
            }
        )
    return [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]


def markdown_report(summary: dict[str, Any]) -> str:
    rows = _table_rows(summary)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    cached = sum(s["cached"] for s in summary["stages"])
    return (
        f"# Trans-Encoder run `{summary['run_name']}`\n\n"
        + "\n".join(lines)
        + f"\n\n{cached} of {len(summary['stages'])} stages came from the cache.\n"
    )


@task(cache_policy=NO_CACHE, persist_result=False)
def publish_report(
    cfg: Any,
    stages: list[dict[str, Any]],
    cycles: list[dict[str, Any]],
    start_eval: dict[str, Any],
    finals: dict[str, dict[str, Any]],
    best: dict[str, int],
    data: dict[str, Any],
) -> dict[str, Any]:
    """Write `runs/{run_name}/summary.json` to the store and publish table and markdown artifacts."""
    summary = build_summary(cfg, stages, cycles, start_eval, finals, best, data)
    store = Store(cfg.store)
    uri = store.uri("runs", cfg.run_name, "summary.json")
    store.write_json(uri, summary)
    summary["summary_uri"] = uri
    key = "".join(ch if ch.isalnum() else "-" for ch in cfg.run_name.lower())
    create_table_artifact(_table_rows(summary), key=f"te-{key}", description="Spearman x100 per model")
    create_markdown_artifact(markdown_report(summary), key=f"te-{key}-report")
    return summary
