"""Throughput of trans-encoder against sentence-transformers: same model, data, machine, one run.

Measurements (each side in its own fresh Python process unless --in-process):

  bi_pool      bi-encoder scoring of the STS pool (STS12-16 + STS-B, transductive; sentences repeat)
  bi_unique    bi-encoder scoring of a table without repeats (the pool's distinct sentences, paired)
  cross        cross-encoder scoring (max_length 64)
  train_cross  bi->cross training steps, soft-label BCE on the logit, both orders (batch 32)
  train_bi     cross->bi training steps, MSE on the cosine (batch 128)
  *_nodrop     the same training with every dropout set to 0, a few steps: loss curves must agree

Ours is `trans_encoder_core.scoring.bi_scores` / `cross_scores` and `distillation.train_*`; theirs is
`SentenceTransformer.encode` of both columns + pairwise cosine, `CrossEncoder.predict`, and the
sentence-transformers training loops `old_fit` (the v2 loop; v6's Trainer needs `accelerate` and
`datasets`, which the project does not install). Both sides load the same saved folders, so the weights
are identical, and both training runs see the same examples in the same order (ours: `epoch_order`;
theirs: a DataLoader with that order as its sampler) with dropout reseeded per step as ours does.

Modules (bench/, not a package; this file is the entry point and the child process):
speed_common (sizes and the constants, from the core's config defaults), speed_data (tables, models,
teacher labels), speed_tokens (padded-token counts), speed_scoring / speed_training (the workloads),
speed_harness (timing, peak RSS, child processes), speed_suite (both sides of every measurement),
speed_pipeline (the flow's overhead), speed_report (comparison, table, JSON settings, machine).

Memory: peak RSS of the measuring process during the timed call (Linux VmHWM, reset through
/proc/self/clear_refs after setup and warm-up) and its rise over the RSS at the start of the call;
on CUDA also torch.cuda.max_memory_allocated.

Usage: python bench/speed.py --quick              # smoke sizes (12 min at load 9 on 2 cores, mostly start-up)
       python bench/speed.py                      # full sizes (estimated ~30 min on 2 quiet cores)
       python bench/speed.py --only bi_pool cross --in-process
       python bench/speed.py --quick --pipeline   # plus the flow's orchestration overhead
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

from speed_common import (  # noqa: E402  (re-exported: bench/gpu_speed.py uses them as speed.X)
    BATCH,
    BENCH_DIR,
    LENGTH,
    LR,
    MEASUREMENTS,
    SIZES,
    WARMUP_RATIO,
    quiet,
)
from speed_data import load_pool  # noqa: E402
from speed_harness import measure  # noqa: E402
from speed_pipeline import pipeline_overhead, pipeline_summary, run_pipeline  # noqa: E402
from speed_report import format_table, git_commit, machine_info, settings, versions  # noqa: E402
from speed_suite import run_suite  # noqa: E402

_quiet = quiet  # the name bench/gpu_speed.py calls
__all__ = [
    "BATCH",
    "BENCH_DIR",
    "LENGTH",
    "LR",
    "MEASUREMENTS",
    "SIZES",
    "WARMUP_RATIO",
    "format_table",
    "git_commit",
    "load_pool",
    "machine_info",
    "main",
    "run_suite",
    "versions",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--model", default="packaged", help="model name or folder (default: packaged all-MiniLM-L6-v2)"
    )
    p.add_argument("--quick", action="store_true", help="small smoke sizes (minutes on 2 busy cores)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/speed-<device>.json)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--packing", action="store_true", help="ours on packed rows (trans_encoder_core.packing)")
    p.add_argument(
        "--fast",
        action="store_true",
        help="ours with fit.fast_dropout and fit.fused_optimizer (same distribution and update,\n"
        "other dropout masks and rounding)",
    )
    p.add_argument(
        "--their-precision",
        choices=("fp32", "bf16"),
        default=None,
        help="sentence-transformers in this precision (default: --precision), e.g. ours bf16 against\n"
        "their default fp32",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--only", nargs="*", choices=MEASUREMENTS, default=list(MEASUREMENTS), help="none: pipeline only"
    )
    p.add_argument(
        "--in-process", action="store_true", help="one process for all (faster, memory less honest)"
    )
    p.add_argument("--pipeline", action="store_true", help="also measure the flow's overhead (slow)")
    p.add_argument("--pipeline-pairs", type=int, default=None, help="max_pairs of the pipeline run")
    p.add_argument("--cross-steps", type=int, default=None)
    p.add_argument("--bi-steps", type=int, default=None)
    p.add_argument(
        "--repeat", type=int, default=1, help="time each scoring call this many times, keep the best"
    )
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument(
        "--data",
        default=None,
        help="STS folder (default $TRANS_ENCODER_DATA or ../shared/data/sts next to the repository)",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_main(spec_path: str) -> None:
    """A child process: one measurement side, or the pipeline run, from a JSON spec."""
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("pipeline"):
        result = pipeline_overhead(
            spec["max_pairs"],
            eval_tasks=spec["eval_tasks"],
            device=spec["device"],
            model=spec["model"],
            data=spec["data"],
        )
    else:
        result = measure(spec)
    Path(spec["out"]).write_text(json.dumps(result))


def _sizes(args: argparse.Namespace) -> dict[str, Any]:
    sizes = dict(SIZES["quick" if args.quick else "full"])
    if args.cross_steps:
        sizes["cross_steps"] = args.cross_steps
    if args.bi_steps:
        sizes["bi_steps"] = args.bi_steps
    return sizes


def _measure_all(args: argparse.Namespace, sizes: dict[str, Any], work: Path) -> dict[str, Any]:
    suite = run_suite(
        model=args.model,
        device=args.device,
        precision=args.precision,
        packing=args.packing,
        fast=args.fast,
        their_precision=args.their_precision,
        threads=args.threads,
        sizes=sizes,
        only=args.only,
        in_process=args.in_process,
        seed=args.seed,
        data_root=args.data,
        work=work,
        repeat=args.repeat,
    )
    suite.pop("model_folders")
    return suite


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with --child, one measurement side), write the JSON, print the table."""
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return
    sizes = _sizes(args)
    out = Path(args.out) if args.out else BENCH_DIR / "results" / f"speed-{args.device}.json"
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="te-bench-speed-") as tmp:
        suite: dict[str, Any] = _measure_all(args, sizes, Path(tmp)) if args.only else {"rows": []}
        pipeline = None
        if args.pipeline:
            (Path(tmp) / "results").mkdir(parents=True, exist_ok=True)
            pipeline = run_pipeline(args, sizes, Path(tmp) / "results")
    report = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "settings": settings(args, sizes),
        "versions": versions(),
        "machine": machine_info(),
        **suite,
        "pipeline": pipeline,
        "wall_seconds": time.time() - started,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if suite["rows"]:
        print(format_table(suite["rows"]))
    if pipeline:
        print(pipeline_summary(pipeline))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
