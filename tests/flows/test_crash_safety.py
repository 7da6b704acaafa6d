"""Crash safety: SIGKILL `trans-encoder self-distill` at exact steps of every stage kind, then rerun.

The harness runs the command line (`python -m flows.cli self-distill ...`, a tiny model, the example
pairs, a tiny STS-B folder written by the tests) as subprocesses:

1. once uninterrupted: the reference (scores, stage order, and the sha256 of every file of every
   artifact). Stage keys from cross_scores on depend on the store root (labels record their model's
   URI), so the reference runs at a path that is then moved aside, and the tests below reuse that very
   path (`same_path_store`): their keys, and so their artifacts' bytes, must equal the reference's;
2. then a chain on one store, as an operator would: each run dies at the next kill point of
   `LOCAL_KILLS`, the store is checked, the next run resumes from what was committed, ... and a last
   run finishes. Kill points are deterministic: a test hook (tasks/hooks.py) SIGKILLs the process at a
   named step (a stage starting to compute; a commit after its first file, before its marker, after
   its marker, after the rename), or `TRANS_ENCODER_FAULT=stage:cycle:kill` kills it inside a fit,
   right after its first training checkpoint. Every stage kind is killed in its commit, every commit
   step is hit in several stage kinds, and both training stages are killed mid-fit.

After every kill: every visible folder under `{store}/stages/*/*` verifies against its
`_COMMIT.json` (a partial commit is only ever a hidden `.tmp-` folder, which is checked to exist for
kills inside a commit), every `_COMMIT.json` anywhere lists files that are all present and match (a
marker is never written before the files it vouches for), checkpoints and summaries are readable.
The final run reproduces the reference's numbers, and every artifact file in the store equals the
reference's byte for byte (a stage recomputed after a kill, or resumed from a checkpoint, writes the
same bytes). Then every artifact is deleted and a rerun recomputes all of them: the same bytes again.

Subprocesses report to the session's Prefect test server (`PREFECT_API_URL`), each with its own
`PREFECT_HOME`, so none pays for starting a temporary server; torch runs on one thread. Each rerun's
process is started ahead of time and does its imports while the previous one runs; it begins the
flow (`flows.cli.main`, exactly what `python -m flows.cli` calls) only when told to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tasks.artifacts import load_checkpoint
from tasks.hooks import HOOK_ENV
from tasks.store import COMMIT_FILE, Store, sha256_file
from tests.flows.conftest import EXAMPLE_PAIRS, REPO_ROOT, only_model

STAGE_KINDS = ("ingest_pairs", "evaluate", "bi_scores", "train_cross", "cross_scores", "train_bi")
STAGE_LINE = re.compile(r"stage (\w+) \(cycle (\d+)\): (computing|cached at) (\S+)")
PROCESS_TIMEOUT_S = 300
COMMIT_STEPS = ("commit-partial", "commit-unmarked", "commit-marked", "commit-published")


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
    store: Path | str,
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
    if summary is None:
        assert isinstance(store, Path), "a remote store needs an explicit summary path"
        summary = store.parent / f"{store.name}-{run_name}-summary.json"
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
    "import sys, prefect, torch, transformers, flows.cli\n"
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


def collect(proc: subprocess.Popen[str], *, on_line: Callable[[str], None] | None = None) -> CliRun:
    """Read a subprocess's output to the end (calling `on_line` on each line); None as the exit
    code means the process was SIGKILLed (by a test hook: see `kill_run`)."""
    start = time.perf_counter()
    watchdog = threading.Timer(PROCESS_TIMEOUT_S, kill_group, [proc])
    watchdog.start()
    run = CliRun(None, [], 0.0)
    assert proc.stdout is not None
    for line in proc.stdout:
        run.lines.append(line)
        if match := STAGE_LINE.search(line):
            run.stages_seen.append((match.group(3), stage_path(match.group(4))))
        if on_line is not None:
            on_line(line)
    proc.wait()
    timed_out = not watchdog.is_alive()
    watchdog.cancel()
    run.seconds = time.perf_counter() - start
    assert not timed_out, "timed out:\n" + run.output[-3000:]
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
    assert_markers_vouch_for_complete_files(root)
    for ckpt in sorted((root / "checkpoints").rglob("state.safetensors")):
        uri = store.root + "/" + ckpt.relative_to(root).as_posix()
        assert load_checkpoint(store, uri) is not None, f"checkpoint {ckpt} is unreadable"
    for summary in sorted((root / "runs").rglob("summary.json")):
        json.loads(summary.read_text())


def assert_markers_vouch_for_complete_files(root: Path) -> None:
    """Every `_COMMIT.json` under `stages/`, hidden folders included, lists only present, matching files."""
    for marker in sorted((root / "stages").glob(f"*/*/{COMMIT_FILE}")):
        for rel, rec in json.loads(marker.read_text())["files"].items():
            path = marker.parent / rel
            assert path.is_file(), f"{marker} vouches for {rel}, which is missing"
            assert sha256_file(path) == rec["sha256"], f"{marker} vouches for {rel}, which differs"


def committed_stages(root: Path) -> set[str]:
    return {
        f"{p.parent.parent.name}/{p.parent.name}"
        for p in (root / "stages").glob(f"*/*/{COMMIT_FILE}")
        if not p.parent.name.startswith(".")
    }


def artifact_bytes(root: Path) -> dict[str, str]:
    """sha256 of every file of every committed artifact (`stage/key/file`), markers excluded (they
    hold the stage's metrics, which include timings)."""
    return {
        f"{key}/{p.relative_to(root / 'stages' / key).as_posix()}": sha256_file(p)
        for key in sorted(committed_stages(root))
        for p in sorted((root / "stages" / key).rglob("*"))
        if p.is_file() and p.name != COMMIT_FILE
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


# -- the reference run, shared with test_concurrency and test_s3_store -----------------------------
@dataclass(frozen=True)
class Reference:
    summary: dict[str, Any]
    order: list[str]  # stage names in execution order (one log line each: computing or cached)
    files: dict[str, str]  # artifact_bytes of the reference store
    path: Path  # where it ran; free again (moved aside) for `same_path_store`
    wall: float


_REFERENCE: dict[tuple[str, ...], Reference] = {}


def reference_run(root: Path, model: Path, data: Path) -> Reference:
    """The uninterrupted tiny run (computed once per session and argument set)."""
    key = (str(model), str(data))
    if key not in _REFERENCE:
        store = root / "store"
        run = run_cli(tiny_cli_args(store, model, data), subprocess_env(root / "home-reference"))
        assert run.returncode == 0, run.output[-4000:]
        summary = json.loads((root / "store-crash-summary.json").read_text())
        order = [path.split("/")[0] for event, path in run.stages_seen]
        assert order == [s["name"] for s in summary["stages"]], (order, summary["stages"])
        assert set(order) == set(STAGE_KINDS)
        files = artifact_bytes(store)
        store.rename(root / "reference-store")
        _REFERENCE[key] = Reference(summary, order, files, store, run.seconds)
    return _REFERENCE[key]


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, flow_model: Path, tiny_sts: Path) -> Reference:
    return reference_run(tmp_path_factory.mktemp("reference"), flow_model, tiny_sts)


@contextmanager
def reference_path(reference: Reference) -> Iterator[Path]:
    """The reference's own store path, empty (so stage keys equal the reference's); moved aside after."""
    assert not reference.path.exists(), "another test still holds the reference's path"
    try:
        yield reference.path
    finally:
        if reference.path.exists():
            reference.path.rename(reference.path.with_name(f"store-{time.monotonic_ns()}"))


@pytest.fixture
def same_path_store(reference: Reference) -> Iterator[Path]:
    with reference_path(reference) as path:
        yield path


# -- the harness ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kill:
    """Where a run dies: a hook point of a stage, or "fit" (inside a fit, after its first checkpoint)."""

    point: str
    stage: str

    def env(self) -> dict[str, str]:
        if self.point == "fit":
            return {"TRANS_ENCODER_FAULT": f"{self.stage}:1:kill"}
        return {HOOK_ENV: json.dumps([{"point": self.point, "stage": self.stage, "action": "kill"}])}


# In run order: every stage kind is killed inside its commit, every commit step is hit, and both
# training stages die inside their fit (the next run resumes from the checkpoint).
LOCAL_KILLS = [
    Kill("commit-partial", "ingest_pairs"),
    Kill("commit-marked", "evaluate"),  # the starting model's evaluation
    Kill("commit-unmarked", "bi_scores"),
    Kill("fit", "train_cross"),
    Kill("commit-partial", "train_cross"),  # the resumed fit finishes; dies with part of its folder
    Kill("commit-published", "cross_scores"),
    Kill("fit", "train_bi"),
    Kill("commit-marked", "train_bi"),
    Kill("commit-published", "evaluate"),  # the first final evaluation
    Kill("commit-unmarked", "evaluate"),  # the second
]


def killed_where(run: CliRun, kill: Kill) -> str:
    """Check that the run died at `kill` (not earlier, not of something else); the stage's key."""
    assert run.returncode is None, f"the run was to die at {kill}:\n{run.output[-3000:]}"
    computing = [path for event, path in run.stages_seen if event == "computing"]
    assert computing and computing[-1].split("/")[0] == kill.stage, (kill, computing)
    if kill.point != "fit":
        assert f"test hook: SIGKILL at {kill.point} {computing[-1]}" in run.output, run.output[-3000:]
    return computing[-1]


def assert_kill_left_what_it_should(root: Path, kill: Kill, path: str) -> None:
    """A kill inside a commit leaves a hidden partial folder and nothing visible; after the rename,
    the artifact is committed; inside a fit, a checkpoint."""
    stage, key = path.split("/")
    partial = list((root / "stages" / stage).glob(f".{key}.tmp-*"))
    if kill.point in ("commit-partial", "commit-unmarked", "commit-marked"):
        assert partial, f"no partial commit of {path} after a kill at {kill.point}"
        assert not (root / "stages" / path).exists()
        assert (partial[0] / COMMIT_FILE).is_file() == (kill.point == "commit-marked")
    elif kill.point == "commit-published":
        assert Store(str(root)).verify(Store(str(root)).uri("stages", stage, key)) is not None
    elif kill.point == "fit":
        assert list((root / "checkpoints" / stage).rglob("state.safetensors")), f"no checkpoint of {path}"


def test_sigkill_at_every_commit_step_of_every_stage_kind_never_exposes_partial_outputs(
    same_path_store: Path, reference: Reference, flow_model: Path, tiny_sts: Path, tmp_path: Path
) -> None:
    store = same_path_store
    args = tiny_cli_args(store, flow_model, tiny_sts)
    plan: list[dict[str, str]] = [k.env() for k in LOCAL_KILLS] + [{}, {}]
    # The next two runs import while the current process runs (they start the flow on "go" only).
    homes = iter(tmp_path / f"home-{i}" for i in range(len(plan)))
    ahead = deque(launch_cli(args, subprocess_env(next(homes), **env), gated=True) for env in plan[:2])
    waiting = deque(plan[2:])
    killed: list[tuple[Kill, str]] = []

    def next_run() -> CliRun:
        proc = go(ahead.popleft())
        if waiting:
            ahead.append(launch_cli(args, subprocess_env(next(homes), **waiting.popleft()), gated=True))
        return collect(proc)

    try:
        for kill in LOCAL_KILLS:
            path = killed_where(next_run(), kill)
            assert_store_consistent(store)
            assert_kill_left_what_it_should(store, kill, path)
            killed.append((kill, path))
        final = next_run()
        assert final.returncode == 0, final.output[-4000:]
        assert_store_consistent(store)
        summary = json.loads(store.with_name("store-crash-summary.json").read_text())
        assert scores(summary) == scores(reference.summary)
        assert [k.split("/")[0] for k in stage_keys(summary)] == reference.order
        assert {kill.stage for kill, _ in killed} == set(STAGE_KINDS)
        assert artifact_bytes(store) == reference.files, "a recomputed or resumed stage wrote other bytes"
        # Recompute every stage from nothing in a new process: the same bytes again.
        for folder in sorted((store / "stages").glob("*/*")):
            shutil.rmtree(folder)
        again = next_run()
    finally:
        for proc in ahead:
            dismiss(proc)
    assert again.returncode == 0, again.output[-4000:]
    assert [event for event, _ in again.stages_seen] == ["computing"] * len(reference.order)
    assert artifact_bytes(store) == reference.files, "recomputing a stage wrote other bytes"
