"""Binary-task benchmark: paper Table 11's layout (ROC-AUC x 100) for a binary preset, per seed.

Runs `trans-encoder distill --preset PRESET --seed S` once per seed, each in its own process, then
prints dev and test ROC-AUC x 100 of the starting bi-encoder, TEnc bi and TEnc cross (chosen on the
task's dev set by ROC-AUC), per seed and as the mean over seeds, and writes JSON with the commands.

    python bench/binary.py --preset quick-mrpc --seeds 2021 1 --store /work/te-mrpc-store \\
        --out bench/results/quality-quick-mrpc.json
    python bench/binary.py --summaries runs/*.json        # tabulate finished runs, compute nothing

Extra arguments after `--` go to the CLI unchanged (e.g. `-- --set plms.bi.fit.epochs=2`).
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

ROOT = Path(__file__).resolve().parent.parent
LABELS = (("start bi", "start", "bi"), ("TEnc bi", "best", "bi"), ("TEnc cross", "best", "cross"))


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Start bi, TEnc bi and TEnc cross of a one-PLM run: cycle, dev and each test set (x100)."""
    (model,) = summary["models"].values()
    rows = []
    for label, group, kind in LABELS:
        entry = model[group][kind]
        rows.append(
            {"model": label, "cycle": entry["cycle"], "dev": entry["dev"], **entry["test"]}
            | {"metrics": entry.get("metrics", {})}
        )
    return rows


def mean_rows(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Row-by-row mean over seeds of every score column."""
    out = []
    for rows in zip(*per_seed, strict=True):
        keys = [k for k in rows[0] if k not in ("model", "cycle", "metrics")]
        out.append({"model": rows[0]["model"], **{k: statistics.fmean(r[k] for r in rows) for k in keys}})
    return out


def format_table(rows: list[dict[str, Any]], title: str) -> str:
    keys = [k for k in rows[0] if k not in ("model", "metrics")]
    lines = [title, f"{'model':<12}" + "".join(f"{k:>10}" for k in keys)]
    for r in rows:
        cells = [r.get(k) for k in keys]
        lines.append(
            f"{r['model']:<12}"
            + "".join(f"{v:>10.2f}" if isinstance(v, float) else f"{v!s:>10}" for v in cells)
        )
    return "\n".join(lines)


def run_command(args: argparse.Namespace, seed: int, summary_path: Path) -> list[str]:
    cmd = [sys.executable, "-m", "flows.cli", "distill", "--preset", args.preset, "--seed", str(seed)]
    cmd += ["--store", args.store, "--run-name", f"{args.preset}-{seed}", "--summary", str(summary_path)]
    cmd += ["--model", args.model] if args.model else []
    return cmd + args.extra


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick-mrpc")
    p.add_argument("--seeds", type=int, nargs="+", default=[2021])
    p.add_argument("--store", default="./te-store")
    p.add_argument("--model", help="starting bi-encoder (default: the preset's)")
    p.add_argument("--out", help="write the JSON here")
    p.add_argument("--summaries", nargs="+", help="tabulate these summary.json files instead of running")
    args = p.parse_args(argv)
    args.extra = extra
    runs = []
    if args.summaries:
        runs = [{"summary": s, "seconds": None, "command": None} for s in args.summaries]
    else:
        out_dir = Path(args.out).parent if args.out else Path(".")
        for seed in args.seeds:
            path = (out_dir / f"{args.preset}-seed-{seed}.summary.json").resolve()
            cmd = run_command(args, seed, path)
            seconds = run_cli(cmd)
            runs.append({"summary": str(path), "seconds": round(seconds, 1), "command": cmd})
    per_seed = []
    for run in runs:
        summary = json.loads(Path(run["summary"]).read_text())
        rows = summary_rows(summary)
        per_seed.append(rows)
        run.update(seed=summary["config"]["seed"], rows=rows, all_cached=summary["all_cached"])
        run["stages"] = [{k: s[k] for k in ("name", "cycle", "cached", "seconds")} for s in summary["stages"]]
        run["eval_sets"] = summary.get("eval_sets")
        print(format_table(rows, f"seed {run['seed']} ({run['seconds']} s)"))
    mean = mean_rows(per_seed)
    print(format_table(mean, f"mean over {len(per_seed)} seed(s)"))
    if args.out:
        result = {
            "preset": args.preset,
            "extra": extra,
            "runs": runs,
            "mean": mean,
            "commit": git_commit(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        }
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
