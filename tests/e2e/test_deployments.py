"""End to end with a real Prefect server: the deployments of prefect.yaml run on a process worker,
publish artifacts, resume after a failure through a UI-style retry, and retrain on the pairs-added event.

One stack (server, pool, deployments, worker) serves the module; every test uses its own store. The
flows run a tiny random BERT on the 40 example pairs without benchmark data, so each run takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.e2e.prefect_stack import REPO_ROOT, PrefectStack, wait_for
from tests.tiny import make_tiny_model

pytestmark = pytest.mark.e2e

EXAMPLE_PAIRS = REPO_ROOT / "data" / "examples" / "pairs.csv"
RUN_TIMEOUT = 240.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectStack]:
    stack = PrefectStack(tmp_path_factory.mktemp("prefect-home"))
    try:
        stack.start()
        yield stack
    except Exception as exc:
        raise RuntimeError(f"{exc}\n{stack.logs()}") from exc
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def client(stack: PrefectStack) -> Iterator[Any]:
    """A synchronous Prefect client of the stack's server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        with get_client(sync_client=True) as sync_client:
            yield sync_client


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model("bert", tmp_path_factory.mktemp("e2e-model") / "bert", seed=3, hidden=32)


def tiny_distill(model: Path, store: Path, run_name: str) -> dict[str, Any]:
    """Self-distillation parameters: one cycle, tiny fits, no benchmark data, on the CPU."""
    from flows.config import single_plm_config
    from trans_encoder_core.config import (
        BiEncoderConfig,
        CrossEncoderConfig,
        bi_fit_defaults,
        cross_fit_defaults,
    )

    config = single_plm_config(
        run_name=run_name,
        store=str(store),
        pairs=str(EXAMPLE_PAIRS),
        eval_tasks=["stsb"],
        cycles=1,
        checkpoint_steps=0,
        device="cpu",
        bi=BiEncoderConfig(model=str(model), fit=bi_fit_defaults(epochs=1, batch_size=16)),
        cross=CrossEncoderConfig(eval_max_length=64, fit=cross_fit_defaults(epochs=1, batch_size=16)),
    )
    return config.model_dump(mode="json")


def start_run(stack: PrefectStack, deployment: str, parameters: dict[str, Any]) -> UUID:
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        return run_deployment(deployment, parameters=parameters, timeout=0).id


def wait_final(client: Any, stack: PrefectStack, run_id: UUID) -> Any:
    """The flow run once it reached a final state (with the stack's logs if it never does)."""

    def final() -> Any:
        run = client.read_flow_run(run_id)
        return run if run.state is not None and run.state.is_final() else None

    try:
        return wait_for(final, timeout=RUN_TIMEOUT, what=f"flow run {run_id}", interval=1.0)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None


def artifacts_of(client: Any, run_id: UUID) -> dict[str, Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {a.key or f"{a.type}:{a.id}": a for a in found}


def stage_runs(summary: dict[str, Any]) -> dict[tuple[str, int], bool]:
    return {(s["name"], s["cycle"]): s["cached"] for s in summary["stages"]}


def test_self_distill_deployment_runs_and_publishes_artifacts(
    stack: PrefectStack, client: Any, tiny_model: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    run_id = start_run(stack, "distill/self-distill", {"config": tiny_distill(tiny_model, store, "e2e")})
    run = wait_final(client, stack, run_id)
    assert run.state.is_completed(), f"{run.state}\n{stack.logs()}"
    artifacts = artifacts_of(client, run_id)
    assert {"te-e2e", "te-e2e-cycles", "te-e2e-report"} <= set(artifacts)
    rows = json.loads(artifacts["te-e2e-cycles"].data)
    assert [(r["cycle"], r["model"]) for r in rows] == [(1, "cross"), (1, "bi")]
    assert all(isinstance(r["label mean"], float) for r in rows)
    assert "## Per cycle" in artifacts["te-e2e-report"].data
    assert any(a.type == "progress" and a.data == 100.0 for a in artifacts.values())
    summary = json.loads((store / "runs" / "e2e" / "summary.json").read_text())
    assert (
        not any(s["cached"] for s in summary["stages"]) and (store / "runs" / "e2e" / "scores.png").exists()
    )


def test_mutual_distill_deployment_runs_two_plms_and_reports_the_ensembles(
    stack: PrefectStack, client: Any, tiny_model: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    config = tiny_distill(tiny_model, store, "e2e-mutual")
    (plm,) = config["plms"]
    config["plms"] = [plm | {"name": "a", "seed": 1}, plm | {"name": "b", "seed": 2}]
    run_id = start_run(stack, "distill/mutual-distill", {"config": config})
    run = wait_final(client, stack, run_id)
    assert run.state.is_completed(), f"{run.state}\n{stack.logs()}"
    summary = json.loads((store / "runs" / "e2e-mutual" / "summary.json").read_text())
    assert set(summary["models"]) == {"a", "b"} and set(summary["ensembles"]) == {"start_bi", "bi", "cross"}
    names = {s["name"] for s in summary["stages"]}
    assert {"average_bi_scores", "average_cross_scores"} <= names
    rows = json.loads(artifacts_of(client, run_id)["te-e2e-mutual"].data)
    assert [r["model"] for r in rows][-3:] == ["ensemble start bi", "ensemble bi", "ensemble cross"]


def test_failed_run_retried_from_the_ui_resumes_from_the_cache(
    stack: PrefectStack, client: Any, tiny_model: Path, tmp_path: Path
) -> None:
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.states import Scheduled

    deployment = client.read_deployment_by_name("distill/self-distill")
    original = deployment.job_variables
    broken = {**original, "env": {**original.get("env", {}), "TRANS_ENCODER_FAULT": "train_cross:1"}}
    client.update_deployment(deployment.id, DeploymentUpdate(job_variables=broken))
    try:
        run_id = start_run(
            stack, "distill/self-distill", {"config": tiny_distill(tiny_model, tmp_path / "s", "retry")}
        )
        failed = wait_final(client, stack, run_id)
    finally:
        client.update_deployment(deployment.id, DeploymentUpdate(job_variables=original))  # the fix
    assert failed.state.is_failed(), f"{failed.state}\n{stack.logs()}"
    # The UI's Retry button: the failed run goes back to Scheduled and the worker starts it again.
    client.set_flow_run_state(run_id, Scheduled(name="AwaitingRetry", message="Retry from the UI"))
    retried = wait_final(client, stack, run_id)
    assert retried.state.is_completed(), f"{retried.state}\n{stack.logs()}"
    assert retried.run_count >= 2
    runs = stage_runs(json.loads((tmp_path / "s" / "runs" / "retry" / "summary.json").read_text()))
    assert runs[("ingest_pairs", 0)] and runs[("evaluate", 0)] and runs[("bi_scores", 1)]
    assert not runs[("train_cross", 1)] and not runs[("train_bi", 1)]


def test_new_pairs_event_triggers_a_retrain_that_publishes_a_version(
    stack: PrefectStack, client: Any, tiny_model: Path, tmp_path: Path
) -> None:
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from flows.config import DistillConfig
    from flows.retrain import RetrainConfig
    from tasks.store import Store

    store = tmp_path / "store"
    # As a user would in the UI form: tiny settings; the store comes from the event, not from here.
    distill = tiny_distill(tiny_model, tmp_path / "unused-default-store", "retrain") | {"pairs": None}
    defaults = RetrainConfig(distill=DistillConfig(**distill)).model_dump(mode="json")
    deployment = client.read_deployment_by_name("retrain/retrain")
    client.update_deployment(deployment.id, DeploymentUpdate(parameters={"config": defaults}))

    out = stack.run("add-pairs", str(EXAMPLE_PAIRS), "--store", str(store), program="trans-encoder")
    assert "event trans-encoder.pairs.added sent" in out, out

    def triggered() -> Any:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
        return runs[0] if runs else None

    try:
        run = wait_for(triggered, timeout=90, what="a retrain run started by the event", interval=1.0)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None
    assert run.parameters["store"] == Store(str(store)).root
    finished = wait_final(client, stack, run.id)
    assert finished.state.is_completed(), f"{finished.state}\n{stack.logs()}"
    listing = stack.run("models", "list", "--store", str(store), program="trans-encoder")
    assert "*      1" in listing and "pairs.csv" in listing, listing
    assert not (tmp_path / "unused-default-store").exists()
    assert "te-retrain" in artifacts_of(client, run.id)


def test_stack_processes_are_gone_after_stop(tmp_path: Path) -> None:
    """`stop` ends a process group even when its leader ignores SIGTERM."""
    stack = PrefectStack(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
        ],
        start_new_session=True,
    )
    stack.processes.append(("stubborn", proc, tmp_path / "none.log"))
    stack.stop(grace=1.0)
    assert proc.poll() is not None
