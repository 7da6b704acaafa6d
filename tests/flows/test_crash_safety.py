"""Crash safety: SIGKILL the `trans-encoder self-distill` process at seeded random points, rerun it.

The harness runs the command line (`python -m flows.cli self-distill ...`, a tiny model, the example
pairs, STS-B evaluation) as a subprocess:

1. once uninterrupted on its own store: the reference (scores, stage order, stage durations);
2. then as a chain on one shared store, as an operator would: start the run, SIGKILL it at the next
   kill point, check the store, rerun it (the rerun resumes from what was committed and is itself
   killed at the following point), ... and finally let a last rerun finish.

Kill points are seeded (`TE_CRASH_SEED`): one per stage execution of the reference run, plus extra
ones in the two training stages, each at a random fraction of the stage's reference duration after it
logs "computing" (or of the first stage still to compute after it, when an earlier process already got
further). After every kill, every folder under `{store}/stages/*/*` is either a committed artifact
whose files match their checksums (`Store.verify`) or a hidden temporary/set-aside folder that no stage
ever reads, every training checkpoint is readable, and every `summary.json` parses. The final rerun
must reproduce the reference's numbers exactly, and every committed folder must be one the final run
uses (a stage recomputed after a kill wrote the same bytes as the killed attempt would have).

Subprocesses report to the session's Prefect test server (`PREFECT_API_URL`), each with its own
`PREFECT_HOME`, so none pays for starting a temporary server; torch runs on one thread. Each rerun's
process is started ahead of time and does its imports while the previous one runs; it begins the
flow (`flows.cli.main`, exactly what `python -m flows.cli` calls) only when told to.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tasks.artifacts import load_checkpoint
from tasks.store import COMMIT_FILE, Store
from tests.flows.conftest import EXAMPLE_PAIRS, REPO_ROOT, only_model

SEED = int(os.environ.get("TE_CRASH_SEED", "2022"))
N_KILLS = 10
STAGE_LINE = re.compile(r"stage (\w+) \(cycle (\d+)\): (computing|cached at) (\S+)")
PROCESS_TIMEOUT_S = 300


# -- running the command line as a subprocess ------------------------------------------------------
def subprocess_env(prefect_home: Path, **extra: str) -> dict[str, str]:
    """Environment of a CLI subprocess: its own PREFECT_HOME, the session's Prefect server, 1 thread."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if k not in ("TRANS_ENCODER_FAULT", "PREFECT_API_URL")}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    if api_url := PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = api_url
    prefect_home.mkdir(parents=True, exist_ok=True)
    env.update(extra)
    return env


def tiny_cli_args(
    store: Path,
    model: Path,
    data: Path,
    *,
    run_name: str = "crash",
    seed: int = 2021,
    summary: Path | None = None,
    extra: dict[str, str] | None = None,
) -> list[str]:
    """`self-distill` arguments for one cycle of a tiny model on the example pairs (seconds on 1 core)."""
    sets = {
        "eval_tasks": '["stsb"]',
        "checkpoint_steps": "2",
        "bi.fit.epochs": "2",
        "bi.fit.batch_size": "8",
        "cross.fit.batch_size": "8",
        "cross.max_length": "32",
        "cross.eval_max_length": "32",
    }
    args = ["self-distill", "--store", str(store), "--pairs", str(EXAMPLE_PAIRS), "--model", str(model)]
    args += ["--data", str(data), "--device", "cpu", "--cycles", "1", "--run-name", run_name]
    summary = summary or store.parent / f"{store.name}-{run_name}-summary.json"
    args += ["--seed", str(seed), "--summary", str(summary)]
    for key, value in {**sets, **(extra or {})}.items():
        args += ["--set", f"{key}={value}"]
    return args


@dataclass
class CliRun:
    """One subprocess run: its exit code (None when we killed it), output and timing."""

    returncode: int | None
    lines: list[str]
    seconds: float
    killed_after: str | None = None
    stages_seen: list[tuple[str, str]] = field(default_factory=list)  # (event, "stage/key")

    @property
    def output(self) -> str:
        return "".join(self.lines)


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL our own subprocess and anything it started (its own session, so nothing else)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# `python -m flows.cli ARGS`, except that the imports happen before a "go" line arrives on stdin: the
# harness starts each rerun's process (imports only) while the previous process is still running.
GATED = (
    "import sys, flows.cli, flows.distill\n"
    "if sys.stdin.readline() != 'go\\n':\n    sys.exit(3)  # the harness went away: do nothing\n"
    "sys.exit(flows.cli.main(sys.argv[1:]))"
)


def launch_cli(args: list[str], env: dict[str, str], *, gated: bool = False) -> subprocess.Popen[str]:
    """Start the CLI; a gated process imports everything, then waits for `go(proc)` to run."""
    return subprocess.Popen(
        [sys.executable, *(["-c", GATED] if gated else ["-m", "flows.cli"]), *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE if gated else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def go(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.close()
    return proc


def dismiss(proc: subprocess.Popen[str]) -> None:
    """End a gated process that was never told to go (EOF on stdin: it exits without running)."""
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.wait()


def stage_path(uri: str) -> str:
    """`stage/key` of a stage URI (the same in every store root)."""
    stage, key = uri.rstrip("/").split("/")[-2:]
    return f"{stage}/{key}"


def collect(
    proc: subprocess.Popen[str], *, kill_after: Callable[[str], float | None] | None = None
) -> CliRun:
    """Read a subprocess's output to the end; SIGKILL it `kill_after(line)` seconds after a line."""
    start = time.perf_counter()
    watchdog = threading.Timer(PROCESS_TIMEOUT_S, kill_group, [proc])
    watchdog.start()
    killer: threading.Timer | None = None
    run = CliRun(None, [], 0.0)
    assert proc.stdout is not None
    for line in proc.stdout:
        run.lines.append(line)
        if match := STAGE_LINE.search(line):
            run.stages_seen.append((match.group(3), stage_path(match.group(4))))
        if killer is None and kill_after is not None and (delay := kill_after(line)) is not None:
            killer = threading.Timer(delay, kill_group, [proc])
            killer.start()
            run.killed_after = line.strip()
    proc.wait()
    watchdog.cancel()
    if killer is not None:
        killer.cancel()
    run.seconds = time.perf_counter() - start
    assert proc.returncode != -signal.SIGKILL or killer is not None, "timed out:\n" + run.output[-3000:]
    run.returncode = None if proc.returncode == -signal.SIGKILL else proc.returncode
    return run


def run_cli(args: list[str], env: dict[str, str], **kwargs: Any) -> CliRun:
    return collect(launch_cli(args, env), **kwargs)


# -- store checks ----------------------------------------------------------------------------------
def assert_store_consistent(root: Path) -> None:
    """No partial object is visible as finished: see the module docstring."""
    store = Store(str(root))
    for stage_dir in sorted((root / "stages").glob("*")):
        for entry in sorted(stage_dir.iterdir()):
            if entry.name.startswith("."):
                assert ".tmp-" in entry.name or ".invalid-" in entry.name, entry
                continue
            uri = store.uri("stages", stage_dir.name, entry.name)
            assert (entry / COMMIT_FILE).is_file(), f"{uri} is visible without a commit marker"
            assert store.verify(uri) is not None, f"{uri} is visible but does not match its checksums"
    for ckpt in sorted((root / "checkpoints").rglob("state.safetensors")):
        uri = store.root + "/" + ckpt.relative_to(root).as_posix()
        assert load_checkpoint(store, uri) is not None, f"checkpoint {ckpt} is unreadable"
    for summary in sorted((root / "runs").rglob("summary.json")):
        json.loads(summary.read_text())


def committed_stages(root: Path) -> set[str]:
    return {
        f"{p.parent.parent.name}/{p.parent.name}"
        for p in (root / "stages").glob(f"*/*/{COMMIT_FILE}")
        if not p.parent.name.startswith(".")
    }


def scores(summary: dict[str, Any]) -> dict[str, Any]:
    """Every number of a run: the selected cycle, dev and test Spearman of each formulation, the
    starting encoder's, and per cycle the dev scores and pseudo-label statistics."""
    best = {kind: (e["cycle"], e["dev"], e["test"]) for kind, e in only_model(summary)["best"].items()}
    cycles = [
        (c["cycle"], c["bi"]["dev"], c["cross"]["dev"], c["labels"]["bi"], c["labels"]["cross"])
        for c in only_model(summary)["cycles"]
    ]
    return {"best": best, "start": only_model(summary)["start"]["bi"]["test"], "cycles": cycles}


def stage_keys(summary: dict[str, Any]) -> list[str]:
    return [stage_path(s["uri"]) for s in summary["stages"]]


# -- the reference run, shared with test_concurrency -----------------------------------------------
@dataclass(frozen=True)
class Reference:
    summary: dict[str, Any]
    order: list[str]  # stage names in execution order (one log line each: computing or cached)
    seconds: list[float]  # each execution's seconds in the reference run
    wall: float


_REFERENCE: dict[tuple[str, ...], Reference] = {}


def reference_run(root: Path, model: Path, data: Path) -> Reference:
    """The uninterrupted tiny run (computed once per session and argument set)."""
    key = (str(model), str(data))
    if key not in _REFERENCE:
        store = root / "reference"
        run = run_cli(tiny_cli_args(store, model, data), subprocess_env(root / "home-reference"))
        assert run.returncode == 0, run.output[-4000:]
        summary = json.loads((root / "reference-crash-summary.json").read_text())
        order = [path.split("/")[0] for event, path in run.stages_seen]
        assert order == [s["name"] for s in summary["stages"]], (order, summary["stages"])
        seconds = [float(s["seconds"]) for s in summary["stages"]]
        _REFERENCE[key] = Reference(summary, order, seconds, run.seconds)
    return _REFERENCE[key]


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, flow_model: Path, data_root: Path) -> Reference:
    return reference_run(tmp_path_factory.mktemp("reference"), flow_model, data_root)


# -- the harness ------------------------------------------------------------------------------------
def kill_plan(ref: Reference, seed: int, n: int = N_KILLS) -> list[tuple[int, float]]:
    """(index of a stage execution, fraction of its duration), seeded, in run order: every execution
    once, then the training stages again (they are the long ones, and a second kill lands in a fit
    resumed from its checkpoint)."""
    rng = random.Random(seed)
    training = [i for i, name in enumerate(ref.order) if name in ("train_cross", "train_bi")]
    targets = list(range(len(ref.order)))
    targets += [training[k % len(training)] for k in range(max(0, n - len(targets)))]
    return sorted((i, rng.uniform(0.05, 0.5)) for i in targets[:n])


def trigger(ref: Reference, target: int, fraction: float) -> Callable[[str], float | None]:
    """Kill at `fraction` of a stage's reference duration after its "computing" line: the target
    execution's, or the first one after it still to compute (an earlier process got past the target).

    Executions are counted by position (every stage logs one line, "computing" or "cached at", in the
    flow's fixed order): keys from cross_scores on depend on the store root, so they differ from the
    reference's."""
    seen = [0]

    def check(line: str) -> float | None:
        match = STAGE_LINE.search(line)
        if match is None:
            return None
        position = seen[0]
        seen[0] += 1
        if match.group(3) != "computing" or position < target:
            return None
        return fraction * ref.seconds[min(position, len(ref.seconds) - 1)]

    return check


def test_sigkill_at_random_points_never_exposes_partial_outputs(
    tmp_path: Path, reference: Reference, flow_model: Path, data_root: Path
) -> None:
    store = tmp_path / "store"
    env = subprocess_env(tmp_path / "home")
    args = tiny_cli_args(store, flow_model, data_root)
    kills: list[str] = []
    timeline: list[float] = []
    # The next two reruns import while the current process runs (they start the flow on "go" only).
    ahead = deque(launch_cli(args, env, gated=True) for _ in range(2))
    try:
        for target, fraction in kill_plan(reference, SEED):
            proc = go(ahead.popleft())
            ahead.append(launch_cli(args, env, gated=True))
            run = collect(proc, kill_after=trigger(reference, target, fraction))
            timeline.append(round(run.seconds, 1))
            if run.returncode is not None:  # nothing left to kill at or after this point: it finished
                assert run.returncode == 0, run.output[-4000:]
                break
            computing = [path for event, path in run.stages_seen if event == "computing"]
            kills.append(computing[-1].split("/")[0] if computing else "start-up")
            assert_store_consistent(store)
        final = collect(go(ahead.popleft()))
    finally:
        for waiting in ahead:
            dismiss(waiting)
    timeline.append(round(final.seconds, 1))
    assert final.returncode == 0, final.output[-4000:]
    assert_store_consistent(store)
    summary = json.loads((tmp_path / "store-crash-summary.json").read_text())
    print(f"reference {reference.wall:.1f} s; kills in {kills}; timeline {timeline}")
    assert scores(summary) == scores(reference.summary)
    # Stage keys depend on the store root from cross_scores on (labels record their model's URI), so
    # bit-exactness is checked inside this store: every committed folder is one the final run uses,
    # i.e. no recomputation after a kill wrote bytes that differ from what a killed run committed.
    assert committed_stages(store) == set(stage_keys(summary))
    assert [k.split("/")[0] for k in stage_keys(summary)] == reference.order
    assert len(kills) >= N_KILLS - 2, f"only {len(kills)} kills landed: {kills}"
    assert {"train_cross", "train_bi"} & set(kills), f"no kill landed in a training stage: {kills}"
    assert len(set(kills)) >= 4, f"kills hit too few stage kinds: {kills}"
