"""Fixtures for flow tests: a Prefect test server for the session and a tiny-model config factory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tiny import make_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PAIRS = REPO_ROOT / "data" / "examples" / "pairs.csv"


@pytest.fixture(scope="session", autouse=True)
def prefect_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def flow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model("bert", tmp_path_factory.mktemp("models") / "bert", seed=3, hidden=32)


@pytest.fixture
def make_config(flow_model: Path, tiny_sts: Path, tmp_path: Path) -> Callable[..., Any]:
    """A two-cycle self-distillation config on the example pairs with a tiny model (seconds on CPU).

    Overrides are the shared fields of `DistillConfig` and the one PLM's `bi`, `cross`,
    `init_method` and `device` (`single_plm_config`)."""
    from flows.config import single_plm_config
    from trans_encoder_core.config import (
        BiEncoderConfig,
        CrossEncoderConfig,
        bi_fit_defaults,
        cross_fit_defaults,
    )

    # fp32 fits: the bookkeeping these tests check must not depend on whether the CPU has native bf16
    # (precision "auto" uses it); with bf16 a tiny model's changed run can round to identical bytes.
    def factory(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "store": str(tmp_path / "store"),
            "pairs": str(EXAMPLE_PAIRS),
            "data": str(tiny_sts),
            "eval_tasks": ["stsb"],
            "cycles": 2,
            "checkpoint_steps": 2,
            "bi": BiEncoderConfig(
                model=str(flow_model),
                fit=bi_fit_defaults(epochs=2, batch_size=8, eval_steps=3, precision="fp32"),
            ),
            "cross": CrossEncoderConfig(
                eval_max_length=64, fit=cross_fit_defaults(batch_size=8, eval_steps=4, precision="fp32")
            ),
        }
        return single_plm_config(**{**values, **overrides})

    return factory


def with_plm(cfg: Any, **updates: Any) -> Any:
    """`cfg` with its one PLM's fields (bi, cross, init_method, device, seed) replaced."""
    (plm,) = cfg.plms
    return cfg.model_copy(update={"plms": [plm.model_copy(update=updates)]})


def only_model(summary: dict[str, Any]) -> dict[str, Any]:
    """The report of a run's one PLM (start, cycles, best)."""
    (model,) = summary["models"].values()
    return model


def stage_runs(summary: dict[str, Any]) -> dict[tuple[str, int], bool]:
    """(stage name, cycle) → whether it came from the cache (final evaluations keyed by their cycle)."""
    return {(s["name"], s["cycle"]): s["cached"] for s in summary["stages"]}
