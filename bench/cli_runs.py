"""Running the project's CLI once per seed for the quality benchmarks (bench/quality.py, bench/binary.py)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(cmd: list[str]) -> float:
    """Run `cmd` in the repository root (printed first); its wall seconds, or exit with one line.

    The run's own output (its one-line error included) is already above when it fails, so a
    traceback from here would only bury it.
    """
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"error: the run above exited with status {done.returncode}; fix what its last line says "
            "and rerun this command (finished stages are cached in the store)."
        )
    return time.perf_counter() - started
