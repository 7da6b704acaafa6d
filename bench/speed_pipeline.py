"""The pipeline's own overhead (bench/speed.py --pipeline): the `quick` flow run twice in a fresh store."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from speed_common import default_data, quiet
from speed_harness import run_child


def _prefect_startup() -> float:
    """Seconds to run a no-op flow: starts Prefect's ephemeral API server, so later timings are warm."""
    from prefect import flow

    @flow(name="bench-noop")
    def noop() -> int:
        return 0

    t0 = time.perf_counter()
    noop()
    return time.perf_counter() - t0


def _quick_config(
    tmp: str, max_pairs: int, eval_tasks: list[str] | None, device: str, model: str, data: str | None
):
    """preset_config("quick") in a store under `tmp`, with one PLM of `model` on `device`."""
    from flows.config import preset_config

    overrides: dict[str, Any] = {
        "store": str(Path(tmp) / "store"),
        "max_pairs": max_pairs,
        "data": data or default_data(),
    }
    if eval_tasks:
        overrides["eval_tasks"] = eval_tasks
    cfg = preset_config("quick", run_name="bench-overhead", **overrides)
    (plm,) = cfg.plms
    plm = plm.model_copy(update={"bi": plm.bi.model_copy(update={"model": model}), "device": device})
    return cfg.model_copy(update={"plms": [plm]})


def pipeline_overhead(
    max_pairs: int,
    *,
    eval_tasks: list[str] | None = None,
    device: str = "auto",
    model: str = "packaged",
    data: str | None = None,
) -> dict[str, Any]:
    """HOOK: the pipeline's own overhead on the `quick` self-distillation flow, run twice.

    Runs `flows.distill.distill(preset_config("quick", store=<tmp>, run_name=..., max_pairs=N))`
    in a fresh store, then again unchanged (every stage cached). Reports the first run's wall time,
    the sum of its stages' seconds (compute + store commit, as measured by `tasks.stages.run_stage`),
    the rest as overhead (Prefect task orchestration, logging, non-stage tasks, report), and the
    fully cached rerun's wall time. Prefect's ephemeral API server is started by a no-op flow first and
    reported separately (`prefect_startup_s`), so the overhead is that of a warm process.
    """
    with tempfile.TemporaryDirectory(prefix="te-bench-pipeline-") as tmp:
        os.environ["PREFECT_HOME"] = str(Path(tmp) / "prefect-home")  # never the user's ~/.prefect
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        quiet()
        from flows.distill import distill

        startup = _prefect_startup()
        cfg = _quick_config(tmp, max_pairs, eval_tasks, device, model, data)
        t1 = time.perf_counter()
        first = distill(cfg)
        t2 = time.perf_counter()
        second = distill(cfg)
        t3 = time.perf_counter()
    total, stage_sum = t2 - t1, sum(s["seconds"] for s in first["stages"])
    return {
        "max_pairs": max_pairs,
        "eval_tasks": cfg.eval_tasks,
        "prefect_startup_s": startup,
        "total_s": total,
        "stage_compute_s": stage_sum,
        "overhead_s": total - stage_sum,
        "overhead_fraction": (total - stage_sum) / total,
        "cached_rerun_s": t3 - t2,
        "cached_rerun_all_cached": second["all_cached"],
        "stages": [{k: s[k] for k in ("name", "cycle", "cached", "seconds")} for s in first["stages"]],
    }


def run_pipeline(args: argparse.Namespace, sizes: dict[str, Any], result_dir: Path) -> dict[str, Any]:
    """pipeline_overhead() in its own process (a fresh Prefect home; nothing shared with the rest)."""
    spec = {
        "pipeline": True,
        "max_pairs": args.pipeline_pairs or sizes["pipeline_pairs"],
        "eval_tasks": ["stsb"] if args.quick else None,
        "device": args.device,
        "model": args.model,
        "data": args.data,
    }
    result, _, tail = run_child(spec, result_dir / "spec-pipeline.json")
    return result if result is not None else {"error": tail}


def pipeline_summary(pipeline: dict[str, Any]) -> str:
    """The one-line (or failure) summary printed after the table."""
    if "error" in pipeline:
        return "pipeline: FAILED\n" + pipeline["error"]
    return (
        f"pipeline (quick, max_pairs={pipeline['max_pairs']}): total {pipeline['total_s']:.1f}s, "
        f"stages "
        f"{pipeline['stage_compute_s']:.1f}s, overhead {pipeline['overhead_s']:.1f}s "
        f"({100 * pipeline['overhead_fraction']:.1f}%), "
        f"cached rerun {pipeline['cached_rerun_s']:.1f}s, "
        f"Prefect startup {pipeline['prefect_startup_s']:.1f}s"
    )
