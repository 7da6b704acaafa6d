"""Quality benchmark: the paper's Table 1 layout for a preset, over one or more seeds.

Runs `trans-encoder self-distill` (one --model) or `trans-encoder mutual-distill` (two or more, or
--mutual) once per seed, each in its own process, then prints Spearman x 100 on STS12-16, STS-B and
SICK-R with the 7-task average for the starting bi-encoder, TEnc bi and TEnc cross (for mutual runs:
each model and the ensembles), per seed and as the mean over seeds, and writes JSON with the settings.
A task whose data is absent is printed as "missing" and the 7-task average as "n/a"; the average over
the tasks that are present is a separate, labelled column, never passed off as the 7-task one.

    python bench/quality.py --preset quick --seeds 2021 1 2 --out bench/results/quality-quick.json
    python bench/quality.py --summaries runs/*.json        # tabulate finished runs, compute nothing

Extra arguments after `--` go to the CLI unchanged (e.g. `-- --set cross.fit.learning_rate=5e-5`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from cli_runs import run_cli  # noqa: E402

TASKS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
HEADERS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STS-B", "SICK-R")
ROOT = Path(__file__).resolve().parent.parent


def self_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, model entry) for a run of one PLM: start bi, TEnc bi, TEnc cross."""
    (model,) = summary["models"].values()
    best = model["best"]
    return [("start bi", model["start"]["bi"]), ("TEnc bi", best["bi"]), ("TEnc cross", best["cross"])]


def mutual_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, model entry) for a mutual summary: each PLM's start/bi/cross, then the ensembles."""
    rows = []
    for i, (name, m) in enumerate(summary["models"].items(), start=1):
        # "PLM i" so that rows line up across seeds, whose PLM names differ (packaged-s1, packaged-s2, ...)
        rows += [(f"PLM {i} start bi", m["start"]["bi"] | {"name": name})]
        rows += [(f"PLM {i} TEnc {kind}", m["best"][kind] | {"name": name}) for kind in ("bi", "cross")]
    labels = {"start_bi": "ensemble start bi", "bi": "ensemble TEnc bi", "cross": "ensemble TEnc cross"}
    return rows + [(labels[g], e) for g, e in summary["ensembles"].items()]


def table_row(label: str, entry: dict[str, Any]) -> dict[str, Any]:
    """One Table 1 row: every task (None when missing), the 7-task average and the available one."""
    test = entry["test"]
    scores = {t: test.get(t) for t in TASKS}
    present = [v for v in scores.values() if v is not None]
    return {
        "model": label,
        **({"name": entry["name"]} if "name" in entry else {}),
        "cycle": entry["cycle"],
        "dev": entry["dev"],
        **scores,
        "avg": statistics.fmean(scores.values()) if len(present) == len(TASKS) else None,
        "avg_available": statistics.fmean(present) if present else None,
        "n_available": len(present),
    }


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 1 rows of one run, self or mutual."""
    pairs = mutual_rows(summary) if len(summary["models"]) > 1 else self_rows(summary)
    return [table_row(label, entry) for label, entry in pairs]


def mean_rows(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Row-by-row mean over seeds (a value is None when any seed lacks it) with the seeds' spread."""
    out = []
    for rows in zip(*per_seed, strict=True):
        if len({r["model"] for r in rows}) != 1:
            raise ValueError(
                f"mean_rows expects the same rows in every run, got {[r['model'] for r in rows]}."
            )
        row: dict[str, Any] = {"model": rows[0]["model"], "seeds": len(rows)}
        row["n_available"] = min(r["n_available"] for r in rows)
        for key in ("dev", *TASKS, "avg", "avg_available"):
            values = [r[key] for r in rows]
            row[key] = None if any(v is None for v in values) else statistics.fmean(values)
            if key in ("stsb", "avg_available") and row[key] is not None and len(values) > 1:
                row[f"{key}_sd"] = statistics.stdev(values)
        out.append(row)
    return out


def missing_tasks(rows: list[dict[str, Any]]) -> list[str]:
    """Tasks with no score in any row: their data folder was absent."""
    return [t for t in TASKS if all(r.get(t) is None for r in rows)]


def _cell(value: Any) -> str:
    if value is None:
        return "missing"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def format_table(rows: list[dict[str, Any]], title: str) -> str:
    """A markdown table in the paper's column order; 'n/a' average when a task is missing."""
    n_avail = max((r.get("n_available", 0) for r in rows), default=0)
    head = ["model", "dev", *HEADERS, "Avg (7)", f"Avg ({n_avail} present)" if n_avail else "Avg (present)"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        avg = "n/a" if r["avg"] is None else _cell(r["avg"])
        cells = [r["model"], _cell(r["dev"]), *(_cell(r[t]) for t in TASKS), avg, _cell(r["avg_available"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_command(args: argparse.Namespace, seed: int, summary_path: Path) -> list[str]:
    """The CLI call that runs one seed and writes its summary to `summary_path`."""
    cli = [sys.executable, "-m", "flows.cli"]
    models = args.model or ["packaged"]
    common = ["--preset", args.preset, "--store", args.store, "--summary", str(summary_path)]
    if args.data:
        common += ["--data", args.data]
    if args.preset.endswith("-mutual") and not args.model:  # the preset's own PLMs (e.g. MiniLM + MPNet)
        run_name = f"quality-{args.preset}-{seed}"
        return cli + ["distill", *common, "--run-name", run_name, "--seed", str(seed)] + args.extra
    if args.mutual or len(models) > 1:
        cmd = cli + ["mutual-distill", *common, "--run-name", f"quality-mutual-{seed}"]
        cmd += [x for m in models for x in ("--model", m)]
        seeds = ",".join(str(seed + k * args.seed_stride) for k in range(args.mutual or 1))
        if args.mutual:
            cmd += ["--seeds", seeds]
        else:
            cmd += ["--seed", str(seed)]
    else:
        cmd = cli + ["self-distill", *common, "--run-name", f"quality-self-{seed}", "--seed", str(seed)]
        cmd += ["--model", models[0]]
    return cmd + args.extra


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", default="quick", choices=["quick", "paper", "quick-mutual", "paper-mutual"]
    )
    parser.add_argument(
        "--model", action="append", help="starting bi-encoder (repeat for mutual); default packaged"
    )
    parser.add_argument(
        "--mutual",
        type=int,
        default=0,
        metavar="N",
        help="mutual run of N copies of --model with seeds seed, seed+stride, ... (no second model offline)",
    )
    parser.add_argument("--seed-stride", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2021, 1, 2])
    parser.add_argument("--store", default="./te-store-quality")
    parser.add_argument("--data", help="benchmark folder (default $TRANS_ENCODER_DATA)")
    parser.add_argument("--summaries", nargs="+", type=Path, help="tabulate these finished runs instead")
    parser.add_argument(
        "--measured-in", type=Path, help="with --summaries: the JSON written when they ran (times, commit)"
    )
    parser.add_argument(
        "--produced-by", default=None, help="with --summaries: the commands and commits that ran them"
    )
    parser.add_argument("--out", type=Path, help="write the JSON here")
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.extra = extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs: list[dict[str, Any]] = []
    measured: dict[str, Any] = {}
    if args.summaries:
        for path in args.summaries:
            runs.append({"summary": str(path), "seconds": None, "data": json.loads(path.read_text())})
        if args.measured_in:  # the JSON this script wrote when it ran them: wall times and commit
            measured = json.loads(args.measured_in.read_text())
            for run, old in zip(runs, measured["runs"], strict=True):
                run["seconds"] = old["seconds"]
    else:
        out_dir = Path(args.store if "://" not in args.store else ".") / "quality-summaries"
        out_dir.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            kind = "mutual" if args.mutual or len(args.model or []) > 1 else "self"
            path = out_dir / f"{kind}-seed-{seed}.json"
            cmd = run_command(args, seed, path)
            seconds = run_cli(cmd)
            runs.append({"summary": str(path), "seconds": seconds, "data": json.loads(path.read_text())})
    per_seed = [summary_rows(r["data"]) for r in runs]
    means = mean_rows(per_seed)
    for r, rows in zip(runs, per_seed, strict=True):
        print(format_table(rows, f"seed {r['data']['config'].get('seed')} ({r['summary']})") + "\n")
    print(format_table(means, f"mean over {len(runs)} run(s)"))
    missing = missing_tasks(means)
    if missing:
        print(f"\nmissing tasks (no data in the benchmark folder): {', '.join(missing)}; 'Avg (7)' is n/a.")
    if args.out:
        result = {
            "benchmark": "quality",
            "commit": measured["commit"] if args.summaries and args.measured_in else git_commit(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "settings": (
                {"tabulated": "finished runs (each run's config is below)", "produced_by": args.produced_by}
                if args.summaries
                else {
                    "preset": args.preset,
                    "models": args.model or ["packaged"],
                    "mutual_copies": args.mutual,
                    "extra_args": args.extra,
                }
            ),
            "command": "python bench/quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "missing_tasks": missing,
            "runs": [
                {
                    "summary": r["summary"],
                    "seconds": r["seconds"],
                    "config": r["data"]["config"],
                    "rows": rows,
                    "stages": r["data"]["stages"],
                }
                for r, rows in zip(runs, per_seed, strict=True)
            ],
            "mean": means,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
