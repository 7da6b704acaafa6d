"""Deterministic test hooks: named points where a test makes the process SIGKILL itself or wait.

The crash-safety and concurrency tests need to stop a run at an exact step (in the middle of a
commit, at the start of a stage) or to hold two runs inside the same step at once. Wall-clock timers
cannot do either reproducibly, so the code calls `hook(point, stage, key)` at these points:

- `stage-computing`: a stage found no committed artifact and is about to compute (tasks/stages.py);
- `commit-partial`: the first file of an artifact has been written (into the hidden temporary folder
  on a local store, under the final prefix on an object store), before the others;
- `commit-unmarked`: every file is written, the commit marker is not;
- `commit-marked`: the marker is written (local: inside the temporary folder, before the rename);
- `commit-published`: the artifact is visible under its final name (local: after the rename).

`TRANS_ENCODER_TEST_HOOK` holds a JSON list of rules, each
`{"point": ..., "stage": ... or "*", "action": "kill" | "barrier", "dir": ..., "parties": N}`.
"kill" SIGKILLs the process (a machine dying at that step); "barrier" registers this process under
`dir/{point}-{stage}-{key}/` and waits until `parties` processes have arrived there (at most
`timeout` seconds, default 120, then raises), so several runs are provably inside the same step
together. The variable is unset outside tests, and then every hook is a no-op.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HOOK_ENV = "TRANS_ENCODER_TEST_HOOK"
POINTS = ("stage-computing", "commit-partial", "commit-unmarked", "commit-marked", "commit-published")


def _rules() -> list[dict[str, Any]]:
    raw = os.environ.get(HOOK_ENV, "").strip()
    return json.loads(raw) if raw else []


def hook(point: str, stage: str, key: str) -> None:
    """Apply every rule of `TRANS_ENCODER_TEST_HOOK` that matches this point and stage."""
    for rule in _rules():
        if rule["point"] != point or rule.get("stage", "*") not in ("*", stage):
            continue
        where = f"{point} {stage}/{key}"
        if rule["action"] == "kill":
            print(f"test hook: SIGKILL at {where}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        elif rule["action"] == "barrier":
            _barrier(Path(rule["dir"]) / f"{point}-{stage}-{key}", int(rule["parties"]), rule, where)
        else:
            raise ValueError(f"{HOOK_ENV} expects action 'kill' or 'barrier', got {rule['action']!r}.")


def _barrier(folder: Path, parties: int, rule: dict[str, Any], where: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + float(rule.get("timeout", 120))
    while len(list(folder.iterdir())) < parties:
        if time.monotonic() > deadline:
            raise RuntimeError(f"test hook: barrier at {where} timed out waiting for {parties} runs")
        time.sleep(0.05)
    print(f"test hook: passed barrier at {where} with {parties} runs", file=sys.stderr, flush=True)
