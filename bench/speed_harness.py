"""Measurement harness of bench/speed.py: one (measurement, side) timed with its peak memory.

Memory is the peak RSS of the measuring process during the timed call (Linux VmHWM, reset through
/proc/self/clear_refs after setup and warm-up) and its rise over the RSS at the start of the call; on
CUDA also torch.cuda.max_memory_allocated. Each measurement runs in a fresh child process
(`bench/speed.py --child SPEC`) unless in-process.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speed_common import BATCH, BENCH_DIR, KIND, REPO_ROOT, quiet, train_kind
from speed_scoring import bi_score, cross_score
from speed_training import train

BUILDERS = {"bi_score": bi_score, "cross_score": cross_score, "train": train}


def status_kb(field: str) -> int | None:
    """A kB field of /proc/self/status (VmRSS, VmHWM), None where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _load1() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _timed(run: Callable[[], Any], repeat: int, cuda: bool) -> tuple[list[float], list[float], Any]:
    """Wall and CPU seconds of `repeat` calls of run(), and the last call's output."""
    import torch

    times, cpu = [], []
    for _ in range(repeat):
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        out = run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu.append(usage1.ru_utime - usage0.ru_utime + usage1.ru_stime - usage0.ru_stime)
    return times, cpu, out


def _outputs(result: dict[str, Any], out: dict[str, Any], spec: dict[str, Any]) -> None:
    """Scores go to an .npy file next to the specs; training keeps losses and step seconds."""
    import numpy as np

    if "scores" in out:
        path = Path(spec["result_dir"]) / f"{spec['name']}-{spec['impl']}.npy"
        np.save(path, np.asarray(out["scores"], dtype=np.float32))
        result["scores_path"] = str(path)
        result["examples"] = len(out["scores"])
        return
    stamps = out["stamps"]
    result["losses"] = out["losses"]
    result["steps"] = out["steps"]
    result["step_seconds"] = [b - a for a, b in zip(stamps, stamps[1:])]
    result["examples"] = out["steps"] * BATCH[train_kind(spec["name"])]


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Set up one (measurement, implementation), warm up, then time the call and take its peak memory."""
    import torch

    quiet()
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    spec["device_type"] = torch.device(spec["device"]).type
    tables = json.loads(Path(spec["data"]).read_text())
    kind, table_name = KIND[spec["name"]]
    warmup, run = BUILDERS[kind](spec, tables[table_name])
    warmup()
    gc.collect()
    cuda = spec["device_type"] == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    reset_ok = reset_peak_rss()
    rss0, load0 = status_kb("VmRSS") or 0, _load1()
    times, cpu, out = _timed(run, spec.get("repeat", 1) if kind != "train" else 1, cuda)
    seconds = min(times)
    hwm = status_kb("VmHWM") or 0
    result: dict[str, Any] = {
        "name": spec["name"],
        "impl": spec["impl"],
        "seconds": seconds,
        "seconds_all": times,
        "cpu_seconds": cpu[times.index(seconds)],
        "load_average_1min": [load0, _load1()],
        "rss_start_mb": rss0 / 1024,
        "peak_rss_mb": hwm / 1024 if reset_ok else None,
        "peak_rss_delta_mb": (hwm - rss0) / 1024 if reset_ok else None,
        "torch_threads": torch.get_num_threads(),
    }
    if cuda:
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["cuda_max_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    _outputs(result, out, spec)
    return result


def run_child(spec: dict[str, Any], spec_path: Path, threads: int | None = None) -> tuple[Any, int, str]:
    """Run `bench/speed.py --child` on `spec` in a fresh process.

    Returns:
        Its JSON result (None if it failed), its exit status and the tail of its output.
    """
    out_path = spec_path.with_suffix(".out.json")
    spec_path.write_text(json.dumps({**spec, "out": str(out_path)}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "speed.py"), "--child", str(spec_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    tail = (proc.stdout + proc.stderr)[-3000:]
    if proc.returncode != 0 or not out_path.exists():
        return None, proc.returncode, tail
    return json.loads(out_path.read_text()), proc.returncode, tail


def run_measurement(spec: dict[str, Any], in_process: bool) -> dict[str, Any]:
    """measure(spec) here or in a child process; RuntimeError with the child's output if it failed."""
    if in_process:
        try:
            return measure(dict(spec))
        finally:
            gc.collect()
    spec_path = Path(spec["result_dir"]) / f"spec-{spec['name']}-{spec['impl']}.json"
    result, code, tail = run_child(spec, spec_path, spec.get("threads"))
    if result is None:
        raise RuntimeError(f"{spec['name']}/{spec['impl']} failed (exit {code}):\n{tail}")
    return result
