"""Self-distillation from a raw PLM: the unsupervised `init_bi` stage (paper §2.1) is the first bi-encoder
and is cached, invalidated and recomputed like every other stage."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flows.distill import distill
from tasks.store import Store
from tests.flows.conftest import only_model, stage_runs
from trans_encoder_core.config import InitConfig, simcse_defaults
from trans_encoder_core.schema import read_lineage

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _small(recipe: Any) -> Any:
    return recipe.model_copy(update={"fit": recipe.fit.model_copy(update={"batch_size": 8, "eval_steps": 3})})


def _stage(summary: dict[str, Any], name: str, cycle: int) -> dict[str, Any]:
    return next(s for s in summary["stages"] if (s["name"], s["cycle"]) == (name, cycle))


def test_self_distill_starts_from_the_unsupervised_init_and_caches_it(make_config: Any) -> None:
    unsup = InitConfig(simcse=_small(simcse_defaults()))
    cfg = make_config(cycles=1, init_method="simcse", unsup=unsup)
    first = distill(cfg)
    init, store = _stage(first, "init_bi", 0), Store(cfg.store)
    metrics = store.read_commit(init["uri"])["meta"]["metrics"]
    assert (
        not init["cached"]
        and metrics["method"] == "simcse"
        and metrics["steps"] == math.ceil(metrics["n_sentences"] / 8)
    )
    labels = Path(store.path(_stage(first, "bi_scores", 1)["uri"])) / "labels.parquet"
    assert read_lineage(pq.read_schema(labels))["model"] == init["uri"]  # cycle 1's teacher is the init
    assert (
        only_model(first)["start"]["bi"]["model"] == init["uri"]
    )  # the report names the real starting model

    second = distill(cfg)
    assert second["all_cached"]
    shutil.rmtree(store.path(init["uri"]))
    runs = stage_runs(distill(cfg))
    assert not runs[("init_bi", 0)], "a deleted init output is recomputed"
    assert all(cached for key, cached in runs.items() if key != ("init_bi", 0)), "with the same bytes"
