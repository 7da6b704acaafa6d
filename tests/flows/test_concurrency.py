"""Concurrency: runs on one store forced to race inside the same stages, as separate processes.

Two `trans-encoder self-distill` processes with the same configuration are released together on one
local store (each with its own PREFECT_HOME). A test hook (tasks/hooks.py) holds them at two
barriers in every stage: when the stage starts computing (so neither finds the other's artifact
cached: both compute every stage) and again when each has its complete copy, marker included, in its
hidden temporary folder (so both then race for the rename that publishes it; one wins, the other
hands out the winner's copy). A third run with another cross-encoder learning rate is released on the
same store once the pair starts training; it shares the first stages with them and then diverges.

Every run succeeds; both racing runs computed every stage (the race happened) and agree with an
uninterrupted solo run, and since the store sits at the solo run's path (same stage keys), every
artifact file equals the solo run's byte for byte; the store holds exactly one committed folder per
stage key and no temporary leftovers; the third run did not disturb them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tasks.hooks import HOOK_ENV
from tasks.store import Store
from tests.flows.test_crash_safety import (
    CliRun,
    Reference,
    artifact_bytes,
    assert_store_consistent,
    collect,
    committed_stages,
    go,
    kill_group,
    launch_cli,
    reference,  # noqa: F401 - the shared uninterrupted run (a session fixture)
    reference_path,
    scores,
    stage_keys,
    subprocess_env,
    tiny_cli_args,
)

PAIR = ("same-1", "same-2")


@dataclass
class Together:
    store: Path
    runs: dict[str, CliRun]
    summaries: dict[str, dict[str, Any]]
    files: dict[str, str]  # artifact_bytes of the store once all runs finished


@pytest.fixture(scope="module")
def together(
    reference: Reference,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    flow_model: Path,
    tiny_sts: Path,
) -> Iterator[Together]:
    with reference_path(reference) as store:
        yield race(store, tmp_path_factory.mktemp("together"), flow_model, tiny_sts)


def race(store: Path, tmp_path: Path, flow_model: Path, tiny_sts: Path) -> Together:
    """Run the pair and the third run (see the module docstring); their outputs and the store's bytes."""
    barriers = [
        {"point": point, "stage": "*", "action": "barrier", "dir": str(tmp_path / "barriers"), "parties": 2}
        for point in ("stage-computing", "commit-marked")
    ]
    hooks = {HOOK_ENV: json.dumps(barriers)}
    configs = {
        "same-1": ("crash", {}, hooks),
        "same-2": ("crash", {}, hooks),
        "other": ("other", {"cross.fit.learning_rate": "1e-4"}, {}),
    }
    procs = {}
    for name, (run_name, sets, env) in configs.items():
        args = tiny_cli_args(
            store, flow_model, tiny_sts, run_name=run_name, extra=sets, summary=tmp_path / f"{name}.json"
        )
        procs[name] = launch_cli(args, subprocess_env(tmp_path / f"home-{name}", **env), gated=True)
    runs: dict[str, CliRun] = {}
    release_other = threading.Event()

    def watch(line: str) -> None:  # the third run starts once the pair is training
        if "stage train_cross (cycle 1): computing" in line and not release_other.is_set():
            release_other.set()
            go(procs["other"])

    def reader(name: str) -> None:
        runs[name] = collect(procs[name], on_line=watch if name == "same-1" else None)

    threads = {name: threading.Thread(target=reader, args=(name,)) for name in configs}
    try:
        for name in PAIR:  # imports are done in each; release the pair together
            go(procs[name])
        for thread in threads.values():
            thread.start()
        for name in PAIR:
            threads[name].join()
        if not release_other.is_set():
            go(procs["other"])
        threads["other"].join()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                kill_group(proc)
    for name in configs:
        assert runs[name].returncode == 0, f"{name} failed:\n{runs[name].output[-4000:]}"
    summaries = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in configs}
    return Together(store, runs, summaries, artifact_bytes(store))


def test_runs_racing_inside_every_stage_succeed_agree_and_leave_one_folder_per_key(
    together: Together,
    reference: Reference,  # noqa: F811
) -> None:
    one, two = (together.summaries[name] for name in PAIR)
    # The race happened: both computed every stage, and passed both barriers of each stage together.
    for name in PAIR:
        assert [s["cached"] for s in together.summaries[name]["stages"]] == [False] * len(reference.order)
        passed = together.runs[name].output.count("test hook: passed barrier at ")
        assert passed == 2 * len(reference.order), (name, passed)
    assert scores(one) == scores(two) == scores(reference.summary)
    assert stage_keys(one) == stage_keys(two) == stage_keys(reference.summary)
    assert {key: together.files.get(key) for key in reference.files} == reference.files, "other bytes"
    # One committed folder per stage key, nothing else under stages/, no temporary leftovers.
    assert_store_consistent(together.store)
    wanted = {key for summary in together.summaries.values() for key in stage_keys(summary)}
    assert committed_stages(together.store) == wanted
    stage_dirs = sorted(f"{p.parent.name}/{p.name}" for p in (together.store / "stages").glob("*/*"))
    assert stage_dirs == sorted(wanted), "one folder per key, no hidden partial or set-aside folder"
    leftovers = [p for p in together.store.rglob("*") if ".tmp-" in p.name or ".invalid-" in p.name]
    assert leftovers == []


def test_a_different_configuration_on_the_same_store_does_not_interfere(
    together: Together,
    reference: Reference,  # noqa: F811
) -> None:
    same, other = together.summaries["same-1"], together.summaries["other"]
    assert scores(same) == scores(reference.summary)
    shared = set(stage_keys(same)) & set(stage_keys(other))
    assert {key.split("/")[0] for key in shared} == {"ingest_pairs", "evaluate", "bi_scores"}
    assert {key.split("/")[0] for key in set(stage_keys(other)) - shared} >= {"train_cross", "train_bi"}
    assert not any(s["cached"] for s in other["stages"] if stage_keys({"stages": [s]})[0] not in shared)
    store = Store(str(together.store))
    for summary in (same, other):
        assert all(store.verify(s["uri"]) is not None for s in summary["stages"])
    for run_name, rate in (("other", 1e-4), ("crash", 2e-5)):
        config = store.read_json(store.uri("runs", run_name, "summary.json"))["config"]
        assert config["plms"][0]["cross"]["fit"]["learning_rate"] == rate
