"""Report of bench/speed.py: both sides compared, the printed table, the JSON settings and machine."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
from typing import Any

from speed_common import BATCH, KIND, LENGTH, LR, REPO_ROOT, WARMUP_RATIO


def median(values: list[float]) -> float | None:
    """The median of `values`, None when empty."""
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _compare_scores(
    row: dict[str, Any], name: str, ours: dict[str, Any], theirs: dict[str, Any], stats: dict
) -> None:
    import numpy as np

    x, y = np.load(ours["scores_path"]), np.load(theirs["scores_path"])
    row["max_abs_score_diff"] = float(np.abs(x.astype(np.float64) - y).max())
    table = KIND[name][1]
    row["rows"] = stats["rows"][table]
    row["repeat_factor"] = stats["repeat_factor"][table]


def _compare_training(row: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    lo, lt = ours["losses"], theirs["losses"]
    n = min(len(lo), len(lt))
    diffs = [abs(p - q) for p, q in zip(lo[:n], lt[:n])]
    row["steps"] = [ours["steps"], theirs["steps"]]
    row["loss_curve_max_abs_diff"] = max(diffs) if diffs else None
    row["first_loss_abs_diff"] = diffs[0] if diffs else None
    row["mean_loss"] = [sum(lo) / max(1, len(lo)), sum(lt) / max(1, len(lt))]
    so, stt = median(ours["step_seconds"]), median(theirs["step_seconds"])
    row["median_step_s"] = [so, stt]
    row["median_step_ratio"] = (stt / so) if so and stt else None


def compare(name: str, ours: dict[str, Any], theirs: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """One table row: throughput of both sides and their ratio, work, agreement and memory."""
    row: dict[str, Any] = {
        "measurement": name,
        "ours_examples_per_s": ours["examples"] / ours["seconds"],
        "st_examples_per_s": theirs["examples"] / theirs["seconds"],
        "ours_seconds": ours["seconds"],
        "st_seconds": theirs["seconds"],
    }
    row["ratio"] = row["ours_examples_per_s"] / row["st_examples_per_s"]
    row["cpu_seconds"] = [ours["cpu_seconds"], theirs["cpu_seconds"]]
    row["load_average_1min"] = [ours["load_average_1min"], theirs["load_average_1min"]]
    work = stats["padded_tokens"].get(name)
    if work:
        row["padded_tokens"] = [work["ours"], work["st"]]
        row["work_ratio"] = work["work_ratio"]
    if "scores_path" in ours:
        _compare_scores(row, name, ours, theirs, stats)
    else:
        _compare_training(row, ours, theirs)
    for key in ("peak_rss_mb", "peak_rss_delta_mb", "cuda_max_allocated_mb"):
        if ours.get(key) is not None:
            row[key] = [ours[key], theirs.get(key)]
    return row


def _notes(row: dict[str, Any]) -> str:
    if "max_abs_score_diff" in row:
        return (
            f"{row['rows']} rows, repeat x{row['repeat_factor']}, padded-token work ratio "
            f"{row['work_ratio']:.2f}, max|diff| {row['max_abs_score_diff']:.1e}, "
            f"{row['ours_seconds']:.1f}s/{row['st_seconds']:.1f}s (cpu {row['cpu_seconds'][0]:.0f}/"
            f"{row['cpu_seconds'][1]:.0f}s)"
        )
    med = row["median_step_s"]
    med_text = f"median step {med[0]:.2f}s/{med[1]:.2f}s" if None not in med else "median step n/a"
    work = f", work ratio {row['work_ratio']:.2f}" if "work_ratio" in row else ""
    return (
        f"{row['steps'][0]} steps, {med_text}{work}, loss curve max|diff| "
        f"{row['loss_curve_max_abs_diff']:.1e} (step 1: {row['first_loss_abs_diff']:.1e})"
    )


def _memory(row: dict[str, Any]) -> str:
    mem = ""
    if row.get("peak_rss_mb"):
        (po, pt), (do, dt_) = row["peak_rss_mb"], row["peak_rss_delta_mb"]
        mem = f"{po:.0f}/{pt:.0f} (+{do:.0f}/+{dt_:.0f})"
    if row.get("cuda_max_allocated_mb"):
        go, gt = row["cuda_max_allocated_mb"]
        mem += f"; GPU {go:.0f}/{gt:.0f}"
    return mem


def format_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table printed at the end of a run."""
    head = (
        "| measurement | ours (ex/s) | sentence-transformers (ex/s) | ratio "
        "| peak RSS MB ours/theirs (rise) | notes |"
    )
    lines = [head, "|---|---:|---:|---:|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['measurement']} | | | | | FAILED: {r['error'][:80]} |")
            continue
        lines.append(
            f"| {r['measurement']} | {r['ours_examples_per_s']:.1f} | {r['st_examples_per_s']:.1f} | "
            f"{r['ratio']:.2f} | {_memory(r)} | {_notes(r)} |"
        )
    return "\n".join(lines)


def settings(args: argparse.Namespace, sizes: dict[str, Any]) -> dict[str, Any]:
    """The run's settings as recorded in the JSON."""
    return {
        "model": args.model,
        "device": args.device,
        "precision": args.precision,
        "packing": args.packing,
        "fast": args.fast,
        "their_precision": args.their_precision or args.precision,
        "threads": args.threads,
        "quick": args.quick,
        "sizes": sizes,
        "batch": BATCH,
        "length": LENGTH,
        "learning_rate": LR,
        "warmup_ratio": WARMUP_RATIO,
        "seed": args.seed,
        "repeat": args.repeat,
        "isolation": "in-process (VmHWM reset per measurement)"
        if args.in_process
        else "one fresh process per measurement and side (VmHWM reset after setup + warm-up)",
        "st_training": "sentence-transformers old_fit (v2 loop), our data order, per-step dropout reseed",
    }


def machine_info() -> dict[str, Any]:
    """Platform, CPU count, torch threads, load average, and the core's machine record (CPU family
    and model, usable cores, torch's instruction set, native bf16, GPU: `trans_encoder_core.machine`)."""
    import torch

    from trans_encoder_core.machine import machine_info as core_machine_info

    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads_default": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        **core_machine_info(),
    }


def versions() -> dict[str, Any]:
    """Python and the installed versions of the packages that matter to the numbers."""
    from importlib import metadata

    out: dict[str, Any] = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "tokenizers", "sentence-transformers", "trans-encoder", "prefect"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    """HEAD of the repository, with "-dirty" when tracked files are modified; None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None
