"""Concurrency: runs started at the same moment on one store, as separate processes.

Three `trans-encoder self-distill` processes are released together on one local store (each with its
own PREFECT_HOME): two with the same configuration and one with another cross-encoder learning rate.
That setting changes the training stages only, so all three compute the first stages (ingest,
starting evaluation, bi labels) at the same time and the two configurations then diverge. Every
run succeeds; the two identical runs agree with each other and with an uninterrupted solo run (so the
third run did not interfere); the store holds exactly one committed folder per stage key and no
temporary leftovers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tasks.store import Store
from tests.flows.test_crash_safety import (
    CliRun,
    Reference,
    assert_store_consistent,
    collect,
    committed_stages,
    go,
    kill_group,
    launch_cli,
    reference,  # noqa: F401 - the shared uninterrupted run (a session fixture)
    scores,
    stage_keys,
    subprocess_env,
    tiny_cli_args,
)


@dataclass
class Together:
    store: Path
    runs: dict[str, CliRun]
    summaries: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def together(
    tmp_path_factory: pytest.TempPathFactory, flow_model: Path, data_root: Path
) -> Iterator[Together]:
    root = tmp_path_factory.mktemp("concurrent")
    store = root / "store"
    other = {"cross.fit.learning_rate": "1e-4"}
    configs = {"same-1": ("same", {}), "same-2": ("same", {}), "other": ("other", other)}
    procs = {}
    try:
        for name, (run_name, extra) in configs.items():
            args = tiny_cli_args(
                store, flow_model, data_root, run_name=run_name, extra=extra, summary=root / f"{name}.json"
            )
            procs[name] = launch_cli(args, subprocess_env(root / f"home-{name}"), gated=True)
        for proc in procs.values():  # imports are done in each; release them together
            go(proc)
        runs = {name: collect(proc) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                kill_group(proc)
    for name, run in runs.items():
        assert run.returncode == 0, f"{name} failed:\n{run.output[-4000:]}"
    summaries = {name: json.loads((root / f"{name}.json").read_text()) for name in configs}
    yield Together(store, runs, summaries)


def test_identical_runs_started_together_both_succeed_and_agree(
    together: Together,
    reference: Reference,  # noqa: F811
) -> None:
    one, two = together.summaries["same-1"], together.summaries["same-2"]
    assert scores(one) == scores(two) == scores(reference.summary)
    assert stage_keys(one) == stage_keys(two)
    computed = [
        sum(not s["cached"] for s in together.summaries[name]["stages"]) for name in ("same-1", "same-2")
    ]
    assert sum(computed) >= len(one["stages"]), "between them, the two runs computed every stage"


def test_store_holds_one_folder_per_stage_key_and_no_leftovers(together: Together) -> None:
    assert_store_consistent(together.store)
    wanted = {key for summary in together.summaries.values() for key in stage_keys(summary)}
    assert committed_stages(together.store) == wanted
    stage_dirs = [p for p in (together.store / "stages").glob("*/*")]
    assert sorted(f"{p.parent.name}/{p.name}" for p in stage_dirs) == sorted(wanted), "one folder per key"
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
    store = Store(str(together.store))
    for summary in (same, other):
        assert all(store.verify(s["uri"]) is not None for s in summary["stages"])
    for run_name, rate in (("other", 1e-4), ("same", 2e-5)):
        config = store.read_json(store.uri("runs", run_name, "summary.json"))["config"]
        assert config["cross"]["fit"]["learning_rate"] == rate
