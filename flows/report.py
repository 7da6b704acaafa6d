"""Model selection and the run report: summary.json in the store plus Prefect artifacts."""

from __future__ import annotations

import base64
import logging
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.plot import SERIES_COLOURS, line_chart
from tasks.artifacts import LABELS_FILE, read_table
from tasks.distill import DEV_TASK
from tasks.store import Store
from trans_encoder_core.metrics import spearman

logger = logging.getLogger(__name__)
PLOT_FILE = "scores.png"


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


def model_entry(model: str, cycle: int | dict[str, int], evaluation: dict[str, Any]) -> dict[str, Any]:
    """One evaluated model (or ensemble: cycle per PLM): where, which cycle, dev and test Spearman x 100."""
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
    agreement: dict[int, float | None] | None = None,
) -> dict[str, Any]:
    """The run report (summary.json); `agreement` maps a cycle to its bi–cross label Spearman x100."""
    agreement = agreement or {}
    # the starting bi-encoder: the unsupervised init stage's output when there is one, else the config's
    start_ref = next((s["uri"] for s in stages if s["name"] == "init_bi"), cfg.bi.model)
    models = {0: start_ref} | {c["cycle"]: c for c in cycles}
    best_models = {}
    for kind in ("bi", "cross"):
        model = start_ref if best[kind] == 0 else models[best[kind]][kind]["uri"]
        best_models[kind] = model_entry(model, best[kind], finals[kind])
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
                    "agreement": agreement.get(c["cycle"]),
                },
            }
            for c in cycles
        ],
        "start": {"bi": model_entry(start_ref, 0, start_eval)},
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


def _round(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}


def _markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]


def label_agreement(store: Store, bi_labels: str, cross_labels: str) -> float | None:
    """Spearman x100 between the bi- and the cross-encoder's pseudo-labels of one cycle (by pair_id)."""
    bi = read_table(store, bi_labels, LABELS_FILE)
    cross = read_table(store, cross_labels, LABELS_FILE)
    cross_by_id = dict(zip(cross["pair_id"].to_pylist(), cross["score"].to_pylist(), strict=True))
    ids, scores = bi["pair_id"].to_pylist(), bi["score"].to_pylist()
    pairs = [(b, cross_by_id[p]) for p, b in zip(ids, scores, strict=True) if p in cross_by_id]
    if len(pairs) < 2:
        return None
    value = spearman([b for b, _ in pairs], [c for _, c in pairs])
    return None if math.isnan(value) else value  # constant labels: undefined


def cycle_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per cycle and model: dev Spearman, and the statistics of the pseudo-labels it was trained on
    (the cross-encoder learns the bi-encoder's labels and vice versa) with the cycle's bi–cross agreement."""
    rows = []
    for c in summary["cycles"]:
        for model, teacher in (("cross", "bi"), ("bi", "cross")):
            stats = c["labels"][teacher]
            rows.append(
                {
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


def score_series(summary: dict[str, Any]) -> list[tuple[str, list[tuple[float, float | None]]]]:
    """The plotted series: dev of bi (cycle 0 = the starting bi-encoder) and cross, and agreement."""
    cycles = summary["cycles"]
    return [
        ("bi dev", [(0, summary["start"]["bi"]["dev"])] + [(c["cycle"], c["bi"]["dev"]) for c in cycles]),
        ("cross dev", [(c["cycle"], c["cross"]["dev"]) for c in cycles]),
        ("bi-cross label agreement", [(c["cycle"], c["labels"].get("agreement")) for c in cycles]),
    ]


def write_plot(store: Store, summary: dict[str, Any]) -> dict[str, Any] | None:
    """Draw the scores per cycle into `runs/{run_name}/scores.png`; None when there is nothing to plot."""
    series = score_series(summary)
    try:
        png = line_chart([points for _, points in series], names=[name for name, _ in series])
    except ValueError as exc:  # nothing to plot (no dev set and no agreement)
        logger.info("no plot for run %s: %s", summary["run_name"], exc)
        return None
    uri = store.uri("runs", summary["run_name"], PLOT_FILE)
    store.write_bytes(uri, png)
    legend = [f"{colour}: {name}" for (colour, _), (name, _) in zip(SERIES_COLOURS, series, strict=False)]
    return {"uri": uri, "legend": legend, "png_base64": base64.b64encode(png).decode()}


def _link(uri: str) -> str:
    return uri if "://" in uri else Path(uri).resolve().as_uri()


def markdown_report(summary: dict[str, Any], plot: dict[str, Any] | None = None) -> str:
    """The run report as markdown: best models, scores and pseudo-labels per cycle, and the plot."""
    cached = sum(s["cached"] for s in summary["stages"])
    parts = [f"# Trans-Encoder run `{summary['run_name']}`", "\n".join(_markdown_table(_table_rows(summary)))]
    if summary["cycles"]:
        parts += ["## Per cycle", "\n".join(_markdown_table(cycle_rows(summary)))]
    if plot is not None:
        parts += [
            "## Scores per cycle (Spearman x100)",
            f"![scores per cycle](data:image/png;base64,{plot['png_base64']})",
            f"Plot: [{plot['uri']}]({_link(plot['uri'])}) — " + ", ".join(plot["legend"]) + ".",
        ]
    parts.append(f"{cached} of {len(summary['stages'])} stages came from the cache.")
    return "\n\n".join(parts) + "\n"


def cycle_agreements(store: Store, cycles: list[dict[str, Any]]) -> dict[int, float | None]:
    """The bi–cross label agreement of every cycle (None where it cannot be computed)."""
    result: dict[int, float | None] = {}
    for c in cycles:
        try:
            result[c["cycle"]] = label_agreement(store, c["bi_labels"]["uri"], c["cross_labels"]["uri"])
        except Exception as exc:  # noqa: BLE001 - a report figure must not fail a finished run
            logger.warning("cycle %s: bi-cross agreement not computed: %s", c["cycle"], exc)
            result[c["cycle"]] = None
    return result


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
    """Write `runs/{run_name}/summary.json` (and `scores.png`) to the store and publish table and
    markdown artifacts: models with their benchmark scores, and scores and pseudo-labels per cycle."""
    store = Store(cfg.store)
    agreement = cycle_agreements(store, cycles)
    summary = build_summary(cfg, stages, cycles, start_eval, finals, best, data, agreement)
    plot = write_plot(store, summary)
    summary["plot_uri"] = plot["uri"] if plot else None
    uri = store.uri("runs", cfg.run_name, "summary.json")
    store.write_json(uri, summary)
    summary["summary_uri"] = uri
    key = "".join(ch if ch.isalnum() else "-" for ch in cfg.run_name.lower())
    create_table_artifact(_table_rows(summary), key=f"te-{key}", description="Spearman x100 per model")
    if summary["cycles"]:
        create_table_artifact(
            cycle_rows(summary),
            key=f"te-{key}-cycles",
            description="Per cycle and model: dev Spearman x100 and the pseudo-labels it was trained on",
        )
    create_markdown_artifact(markdown_report(summary, plot), key=f"te-{key}-report")
    return summary
