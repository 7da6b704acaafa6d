"""The mutual run's report: summary.json in the store plus Prefect table and markdown artifacts.

It reports what the paper's Table 1 reports for a mutual run (algorithm.md §1.6, §4.1): each PLM's
starting bi-encoder, its best bi- and cross-encoder (chosen per model on dev), the ensembles of the
starting and best bi-encoders (mean of cosines) and of the best cross-encoders (mean of
probabilities), plus how much the PLMs' labels agreed in each cycle.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.report import model_entry
from tasks.store import Store

Result = dict[str, Any]
AVERAGE_KEYS = ("mean", "std", "spread", "model_std", "agreement", "agreement_mean")
ENSEMBLE_ROWS = {"start_bi": "ensemble start bi", "bi": "ensemble bi", "cross": "ensemble cross"}


def _stage_rows(log: list[tuple[str | None, Result]]) -> list[dict[str, Any]]:
    keys = ("name", "cycle", "cached", "seconds", "started", "finished", "uri")
    return [{"model": model, **{k: s.get(k) for k in keys}} for model, s in log]


def _cycle_rows(name: str, cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for c in cycles:
        m = c["models"][name]
        rows.append(
            {
                "cycle": c["cycle"],
                "bi": {"dev": m["bi"]["metrics"].get("dev"), "model": m["bi"]["uri"]},
                "cross": {"dev": m["cross"]["metrics"].get("dev"), "model": m["cross"]["uri"]},
                "labels": {
                    "bi": m["bi_labels"]["metrics"]["labels"],
                    "cross": m["cross_labels"]["metrics"]["labels"],
                },
            }
        )
    return rows


def _averages(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "cycle": c["cycle"],
            **{
                kind: {k: c["average"][kind]["metrics"].get(k) for k in AVERAGE_KEYS}
                | {"uri": c["average"][kind]["uri"]}
                for kind in ("bi", "cross")
            },
        }
        for c in cycles
    ]


def _versions() -> dict[str, str]:
    names = ("trans-encoder", "torch", "transformers", "prefect")
    return {"python": platform.python_version(), **{n: metadata.version(n) for n in names}}


def build_mutual_summary(
    cfg: Any,
    log: list[tuple[str | None, Result]],
    cycles: list[dict[str, Any]],
    evaluations: dict[str, dict[str, Result]],
    best: dict[str, dict[str, int]],
    refs: dict[str, dict[str, dict[str, str]]],
    data: dict[str, Any],
) -> dict[str, Any]:
    """The JSON report: every PLM alone, the ensembles, per-cycle label agreement, every stage.

    `evaluations` holds "start", "bi" and "cross" (per PLM) and "ensembles" (per group); `refs` the
    model references of "start", "bi" and "cross" per PLM.
    """
    models = {}
    for name in refs["start"]:
        models[name] = {
            "start": {"bi": model_entry(refs["start"][name]["ref"], 0, evaluations["start"][name])},
            "best": {
                kind: model_entry(refs[kind][name]["ref"], best[name][kind], evaluations[kind][name])
                for kind in ("bi", "cross")
            },
            "cycles": _cycle_rows(name, cycles),
        }
    sources = {"start_bi": ("start", "bi"), "bi": ("bi", "bi"), "cross": ("cross", "cross")}
    ensembles = {}
    for group, result in evaluations["ensembles"].items():
        source, kind = sources[group]
        cycles_used = {n: 0 if source == "start" else best[n][kind] for n in sorted(refs[source])}
        ensembles[group] = model_entry(" + ".join(cycles_used), cycles_used, result)
    return {
        "run_name": cfg.run_name,
        "config": cfg.model_dump(mode="json"),
        "models": models,
        "ensembles": ensembles,
        "averages": _averages(cycles),
        "stages": _stage_rows(log),
        "data": {"missing": data.get("missing") or {}, "reason": data.get("reason")},
        "all_cached": all(s["cached"] for _, s in log),
        "versions": _versions(),
    }


def _row(label: str, entry: dict[str, Any]) -> dict[str, Any]:
    cycle = entry["cycle"]
    if isinstance(cycle, dict):
        cycle = ", ".join(f"{n}:{c}" for n, c in cycle.items())
    return {"model": label, "cycle": cycle, "dev": entry["dev"], **entry["test"], "avg": entry["average"]}


def table_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 1's rows for this run: each PLM's start and best models, then the ensembles."""
    rows = []
    for name, m in summary["models"].items():
        rows.append(_row(f"{name} start bi", m["start"]["bi"]))
        rows += [_row(f"{name} {kind}", m["best"][kind]) for kind in ("bi", "cross")]
    rows += [_row(ENSEMBLE_ROWS[g], e) for g, e in summary["ensembles"].items()]
    return [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]


def markdown_report(summary: dict[str, Any]) -> str:
    """The table as markdown, the label agreement per cycle, and the cache count."""
    rows = table_rows(summary)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    agreement = [
        f"- cycle {a['cycle']}: bi {a['bi']['agreement_mean']}, cross {a['cross']['agreement_mean']}"
        for a in summary["averages"]
    ]
    cached = sum(s["cached"] for s in summary["stages"])
    return (
        f"# Trans-Encoder mutual run `{summary['run_name']}`\n\n"
        + "\n".join(lines)
        + "\n\nPairwise Spearman between the PLMs' labels (× 100):\n"
        + "\n".join(agreement)
        + f"\n\n{cached} of {len(summary['stages'])} stages came from the cache.\n"
    )


@task(cache_policy=NO_CACHE, persist_result=False)
def publish_mutual_report(
    cfg: Any,
    log: list[tuple[str | None, Result]],
    cycles: list[dict[str, Any]],
    evaluations: dict[str, dict[str, Result]],
    best: dict[str, dict[str, int]],
    refs: dict[str, dict[str, dict[str, str]]],
    data: dict[str, Any],
) -> dict[str, Any]:
    """Write `runs/{run_name}/summary.json` to the store and publish table and markdown artifacts."""
    summary = build_mutual_summary(cfg, log, cycles, evaluations, best, refs, data)
    store = Store(cfg.store)
    uri = store.uri("runs", cfg.run_name, "summary.json")
    store.write_json(uri, summary)
    summary["summary_uri"] = uri
    key = "".join(ch if ch.isalnum() else "-" for ch in cfg.run_name.lower())
    create_table_artifact(table_rows(summary), key=f"te-mutual-{key}", description="Spearman x100 per model")
    create_markdown_artifact(markdown_report(summary), key=f"te-mutual-{key}-report")
    return summary
