"""The run report, one shape for one PLM or several: summary.json in the store plus Prefect artifacts.

It reports what the paper's Table 1 reports (algorithm.md §1.6, §4.1): each PLM's starting
bi-encoder and its best bi- and cross-encoder (chosen per model on dev), their scores and
pseudo-labels per cycle, and with several PLMs the ensembles (mean of cosines / of probabilities)
and how much the PLMs' labels agreed. The CLI table, the artifacts, retrain and the registry all
read this shape.
"""

from __future__ import annotations

import base64
import logging
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.plot import ChartLine, score_chart
from tasks.artifacts import LABELS_FILE, read_table
from tasks.eval_sets import DEV
from tasks.evaluate import DEV_TASK
from tasks.store import Store
from trans_encoder_core.machine import machine_info
from trans_encoder_core.selection import KINDS, label_agreement

logger = logging.getLogger(__name__)
PLOT_FILE = "scores.png"
Result = dict[str, Any]
AVERAGE_KEYS = ("mean", "std", "spread", "model_std", "agreement", "agreement_mean")
ENSEMBLE_ROWS = {"start_bi": "ensemble start bi", "bi": "ensemble bi", "cross": "ensemble cross"}


def model_entry(model: str, cycle: int | dict[str, int], evaluation: Result) -> dict[str, Any]:
    """One evaluated model (or ensemble: cycle per PLM): where, which cycle, its dev and test scores
    x100 and each one's metric (the run's own dev set, else STS-B dev; Spearman unless stated)."""
    tasks = dict(evaluation["metrics"]["tasks"])
    known = evaluation["metrics"].get("metrics") or {}
    dev_name = DEV if DEV in tasks else DEV_TASK
    dev = tasks.pop(dev_name, None)
    return {
        "model": model,
        "cycle": cycle,
        "dev": dev,
        "test": tasks,
        "metrics": {"dev": known.get(dev_name, "spearman")} | {t: known.get(t, "spearman") for t in tasks},
        "average": evaluation["metrics"]["average"],
        "missing": evaluation["metrics"]["missing"],
    }


METRIC_NAMES = {"spearman": "Spearman x100", "roc_auc": "ROC-AUC x100"}


def eval_sets_info(data: dict[str, Any], own: dict[str, Any] | None) -> dict[str, Any]:
    """What the run selected on and tested on besides the benchmarks: the dev set (its name, metric,
    source and digest: the registry gate compares only scores on the same dev set) and own test sets."""
    own = own or {"dev": None, "tests": {}}
    keep = ("metric", "source", "digest", "n")
    dev = None
    if own.get("dev"):
        dev = {"name": DEV, **{k: own["dev"][k] for k in keep}}
    elif data.get("dev"):
        dev = {"name": DEV_TASK, "metric": "spearman", "source": "STS-B dev", "digest": data["dev"]["digest"]}
    tests = {name: {k: ref[k] for k in keep} for name, ref in own.get("tests", {}).items()}
    return {"dev": dev, "tests": tests}


def cycle_agreement(store: Store, bi_labels: Result, cross_labels: Result) -> float | None:
    """Spearman x100 between one PLM's bi and cross pseudo-labels of a cycle (None if not computable)."""
    try:
        bi = read_table(store, bi_labels["uri"], LABELS_FILE)
        cross = read_table(store, cross_labels["uri"], LABELS_FILE)
        return label_agreement(
            bi["pair_id"].to_pylist(),
            bi["score"].to_pylist(),
            cross["pair_id"].to_pylist(),
            cross["score"].to_pylist(),
        )
    except Exception as exc:  # noqa: BLE001 - a report figure must not fail a finished run
        logger.warning("bi-cross agreement not computed: %s", exc)
        return None


def _cycle_rows(store: Store, name: str, cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for c in cycles:
        m = c["models"][name]
        rows.append(
            {
                "cycle": c["cycle"],
                **{
                    kind: {
                        "dev": m[kind]["metrics"].get("dev"),
                        "model": m[kind]["uri"],
                        "precision": m[kind]["metrics"].get("precision"),
                    }
                    for kind in KINDS
                },
                "labels": {
                    "bi": m["bi_labels"]["metrics"]["labels"],
                    "cross": m["cross_labels"]["metrics"]["labels"],
                    "agreement": cycle_agreement(store, m["bi_labels"], m["cross_labels"]),
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
                for kind in KINDS
            },
        }
        for c in cycles
        if c["average"] is not None
    ]


def _stage_rows(log: list[tuple[str | None, Result]]) -> list[dict[str, Any]]:
    keys = ("name", "cycle", "cached", "seconds", "started", "finished", "uri")
    return [{"model": model, **{k: s.get(k) for k in keys}} for model, s in log]


def _versions() -> dict[str, str]:
    names = ("trans-encoder", "torch", "transformers", "prefect")
    return {"python": platform.python_version(), **{n: metadata.version(n) for n in names}}


def build_summary(cfg: Any, store: Store, outcome: dict[str, Any]) -> dict[str, Any]:
    """The JSON report: every PLM with its start, cycles and best models; ensembles when N > 1.

    `outcome` is what the flow gathered: `log` (PLM name or None, stage result), `cycles`,
    `evaluations` ("start", "bi" and "cross" per PLM, "ensembles" per group, empty for one PLM),
    `best` (cycle per PLM and kind), `refs` (model references of "start", "bi", "cross" per PLM) and
    `data` (the benchmark inputs).
    """
    log, cycles, evaluations = outcome["log"], outcome["cycles"], outcome["evaluations"]
    best, refs, data = outcome["best"], outcome["refs"], outcome["data"]
    models = {}
    for name in refs["start"]:
        models[name] = {
            "start": {"bi": model_entry(refs["start"][name]["ref"], 0, evaluations["start"][name])},
            "cycles": _cycle_rows(store, name, cycles),
            "best": {
                kind: model_entry(refs[kind][name]["ref"], best[name][kind], evaluations[kind][name])
                for kind in KINDS
            },
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
        "eval_sets": eval_sets_info(data, outcome.get("own_sets")),
        "all_cached": all(s["cached"] for _, s in log),
        "versions": _versions(),
        # the flow's machine (with --dask the per-PLM stages ran on the workers): stage seconds compare
        # only between runs on the same kind of CPU or GPU
        "machine": machine_info(),
    }


def _row(label: str, entry: dict[str, Any]) -> dict[str, Any]:
    cycle = entry["cycle"]
    if isinstance(cycle, dict):
        cycle = ", ".join(f"{n}:{c}" for n, c in cycle.items())
    return {"model": label, "cycle": cycle, "dev": entry["dev"], **entry["test"], "avg": entry["average"]}


def _round(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}


def table_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 1's rows for this run: each PLM's start and best models, then the ensembles."""
    prefix = len(summary["models"]) > 1
    rows = []
    for name, m in summary["models"].items():
        label = f"{name} " if prefix else ""
        rows.append(_row(f"{label}start bi", m["start"]["bi"]))
        rows += [_row(f"{label}best {kind}", m["best"][kind]) for kind in KINDS]
    rows += [_row(ENSEMBLE_ROWS[g], e) for g, e in summary["ensembles"].items()]
    return [_round(r) for r in rows]


def cycle_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per PLM, cycle and formulation: dev Spearman, and the pseudo-labels it was trained on (the
    cross-encoder learns the bi-encoder's labels and vice versa) with the cycle's bi–cross agreement."""
    rows = []
    for name, m in summary["models"].items():
        for c in m["cycles"]:
            for model, teacher in (("cross", "bi"), ("bi", "cross")):
                stats = c["labels"][teacher]
                rows.append(
                    {
                        "plm": name,
                        "cycle": c["cycle"],
                        "model": model,
                        "dev": c[model]["dev"],
                        "trained on": f"{teacher} labels",
                        "label mean": stats["mean"],
                        "label std": stats["std"],
                        "out of [0,1]": stats.get("out_of_range"),
                        "bi-cross agreement": c["labels"].get("agreement"),
                    }
                )
    return [_round(r) for r in rows]


def dev_label(summary: dict[str, Any]) -> str:
    """How the report names the dev set: "STS-B dev", or the run's own with its metric."""
    dev = (summary.get("eval_sets") or {}).get("dev")
    if dev is None or dev["name"] == DEV_TASK:
        return "STS-B dev"
    return f"dev ({'AUC' if dev['metric'] == 'roc_auc' else 'Spearman'})"


def metric_note(summary: dict[str, Any]) -> str | None:
    """One line naming each set's metric when the run has its own sets (None: all Spearman, STS)."""
    info = summary.get("eval_sets") or {}
    if not info.get("tests") and not (info.get("dev") and info["dev"]["name"] == DEV):
        return None
    entries = [e for m in summary["models"].values() for e in (m["start"]["bi"], *m["best"].values())]
    metrics = entries[0]["metrics"] if entries else {}
    sources = {n: t["source"] for n, t in info.get("tests", {}).items()}
    if info.get("dev"):
        sources["dev"] = info["dev"]["source"]
    parts = [
        f"{n} {METRIC_NAMES.get(m, m)}" + (f" ({sources[n]})" if n in sources else "")
        for n, m in metrics.items()
    ]
    return "metrics: " + "; ".join(parts)


def chart_lines(summary: dict[str, Any]) -> list[ChartLine]:
    """The plotted lines, per PLM: dev of bi (cycle 0 = its start) and of cross, and label agreement."""
    lines, dev = [], dev_label(summary)
    for name, m in summary["models"].items():
        cycles = m["cycles"]
        start = [(0, m["start"]["bi"]["dev"])]
        lines += [
            ChartLine(f"{name} bi", dev, start + [(c["cycle"], c["bi"]["dev"]) for c in cycles]),
            ChartLine(f"{name} cross", dev, [(c["cycle"], c["cross"]["dev"]) for c in cycles]),
            ChartLine(
                f"{name} bi vs cross",
                "label agreement",
                [(c["cycle"], c["labels"]["agreement"]) for c in cycles],
            ),
        ]
    return lines


def write_plot(store: Store, summary: dict[str, Any]) -> dict[str, Any] | None:
    """Draw the scores per cycle into `runs/{run_name}/scores.png`; None when there is nothing to plot."""
    try:
        png = score_chart(chart_lines(summary))
    except ValueError as exc:  # nothing to plot (no dev set and no agreement)
        logger.info("no plot for run %s: %s", summary["run_name"], exc)
        return None
    uri = store.uri("runs", summary["run_name"], PLOT_FILE)
    store.write_bytes(uri, png)
    return {"uri": uri, "png_base64": base64.b64encode(png).decode()}


def _markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]


def _link(uri: str) -> str:
    return uri if "://" in uri else Path(uri).resolve().as_uri()


def markdown_report(summary: dict[str, Any], plot: dict[str, Any] | None = None) -> str:
    """The run report as markdown: models, scores and pseudo-labels per cycle, agreement, the plot."""
    cached = sum(s["cached"] for s in summary["stages"])
    parts = [f"# Trans-Encoder run `{summary['run_name']}`", "\n".join(_markdown_table(table_rows(summary)))]
    if note := metric_note(summary):
        parts.append(note)
    rows = cycle_rows(summary)
    if rows:
        parts += ["## Per cycle", "\n".join(_markdown_table(rows))]
    if summary["averages"]:
        parts.append(
            "Pairwise Spearman between the PLMs' labels (× 100):\n"
            + "\n".join(
                f"- cycle {a['cycle']}: bi {a['bi']['agreement_mean']}, cross {a['cross']['agreement_mean']}"
                for a in summary["averages"]
            )
        )
    if plot is not None:
        dev = dev_label(summary)
        parts += [
            f"## Scores per cycle ({'Spearman x100' if dev == 'STS-B dev' else dev})",
            f"![scores per cycle](data:image/png;base64,{plot['png_base64']})",
            f"Plot: [{plot['uri']}]({_link(plot['uri'])}).",
        ]
    parts.append(f"{cached} of {len(summary['stages'])} stages came from the cache.")
    return "\n\n".join(parts) + "\n"


def artifact_key(run_name: str) -> str:
    return "te-" + "".join(ch if ch.isalnum() else "-" for ch in run_name.lower())


@task(cache_policy=NO_CACHE, persist_result=False)
def publish_report(cfg: Any, outcome: dict[str, Any]) -> dict[str, Any]:
    """Write `runs/{run_name}/summary.json` (and `scores.png`) to the store and publish table and
    markdown artifacts (`outcome`: see `build_summary`)."""
    store = Store(cfg.store)
    summary = build_summary(cfg, store, outcome)
    plot = write_plot(store, summary)
    summary["plot_uri"] = plot["uri"] if plot else None
    uri = store.uri("runs", cfg.run_name, "summary.json")
    store.write_json(uri, summary)
    summary["summary_uri"] = uri
    key = artifact_key(cfg.run_name)
    description = metric_note(summary) or "Spearman x100 per model"
    create_table_artifact(table_rows(summary), key=key, description=description)
    if summary["models"] and any(m["cycles"] for m in summary["models"].values()):
        create_table_artifact(
            cycle_rows(summary),
            key=f"{key}-cycles",
            description="Per cycle and model: dev Spearman x100 and the pseudo-labels it was trained on",
        )
    create_markdown_artifact(markdown_report(summary, plot), key=f"{key}-report")
    return summary
