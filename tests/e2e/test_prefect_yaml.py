"""prefect.yaml without a server: entrypoints, typed defaults, limits, schedule, trigger, no secrets."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tasks.inbox import PAIRS_ADDED_EVENT, RESOURCE_PREFIX
from tests.e2e.prefect_stack import POOL, REPO_ROOT


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())


@pytest.fixture(scope="module")
def deployments(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in spec["deployments"]}


def test_every_flow_has_one_enforced_limited_deployment_on_the_process_pool(
    deployments: dict[str, dict[str, Any]],
) -> None:
    from prefect.flows import load_flow_from_entrypoint

    flows = {
        "self-distill": "distill",
        "mutual-distill": "distill",
        "evaluate": "evaluate",
        "retrain": "retrain",
    }
    assert set(deployments) == set(flows)
    for name, d in deployments.items():
        flow = load_flow_from_entrypoint(str(REPO_ROOT / d["entrypoint"]))
        assert flow.name == flows[name]
        assert d["enforce_parameter_schema"] is True and d["concurrency_limit"]["limit"] >= 1
        assert d["work_pool"]["name"] == POOL
        flow.validate_parameters(d["parameters"])  # the defaults pass the flow's typed signature


def test_defaults_are_the_quick_presets(deployments: dict[str, dict[str, Any]]) -> None:
    from flows.config import DistillConfig, preset_config
    from flows.retrain import RetrainConfig

    single = DistillConfig(**deployments["self-distill"]["parameters"]["config"])
    assert single == preset_config("quick", run_name="ui", store="./te-store")
    mutual = DistillConfig(**deployments["mutual-distill"]["parameters"]["config"])
    assert mutual == preset_config("quick-mutual", run_name="ui-mutual", store="./te-store")
    assert [p.bi.model for p in mutual.plms] == ["packaged", "packaged-mpnet"]
    retrain = RetrainConfig(**deployments["retrain"]["parameters"]["config"])
    assert retrain.distill == preset_config("quick", run_name="retrain", store="./te-store")


def test_retrain_runs_on_a_schedule_and_on_the_pairs_added_event(
    deployments: dict[str, dict[str, Any]],
) -> None:
    retrain = deployments["retrain"]
    assert [s["cron"] for s in retrain["schedules"]] == ["0 3 * * *"]
    (trigger,) = retrain["triggers"]
    assert trigger["expect"] == [PAIRS_ADDED_EVENT]
    assert trigger["match"]["prefect.resource.id"] == RESOURCE_PREFIX + "*"
    assert trigger["parameters"] == {"store": "{{ event.payload.store }}"}


def test_runs_start_in_the_repository_and_hold_no_secret(spec: dict[str, Any]) -> None:
    (build,) = spec["build"]
    (pull,) = spec["pull"]
    step_id = build["prefect.deployments.steps.run_shell_script"]["id"]
    assert (
        pull["prefect.deployments.steps.set_working_directory"]["directory"] == f"{{{{ {step_id}.stdout }}}}"
    )
    text = yaml.safe_dump(spec).lower()  # comments are not part of the loaded spec
    for word in ("secret", "password", "aws_access_key", "token:"):
        assert word not in text
