"""Run a Python snippet in a fresh interpreter (process-wide state: allocator, Prefect server)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, env: Mapping[str, str], *, timeout: float = 180) -> dict[str, object]:
    """Run `script` from the repository root with exactly `env`; return the JSON of its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
