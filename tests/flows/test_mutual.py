"""Mutual distillation over two tiny PLMs (a BERT and a RoBERTa): report, averaging, concurrency,
caching, resume after one PLM's failure, config and CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from flows.config import DistillConfig, PLMConfig, preset_config
from flows.distill import run_distill, task_runner_for
from tasks import distill
from tasks.averaging import assign_devices
from tasks.store import Store
from tests.flows.conftest import EXAMPLE_PAIRS
from tests.tiny import make_tiny_model
from trans_encoder_core import encoders
from trans_encoder_core.config import (
    BiEncoderConfig,
    CrossEncoderConfig,
    InitConfig,
    bi_fit_defaults,
    cross_fit_defaults,
    simcse_defaults,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SERIAL = ThreadPoolTaskRunner(max_workers=1)


def build_plm_models(root: Path) -> dict[str, Path]:
    """A tiny BERT and a tiny RoBERTa (different tokenizers and architectures), resolved paths."""
    return {
        "bert": make_tiny_model("bert", root / "bert", seed=3).resolve(),
        "roberta": make_tiny_model("roberta", root / "roberta", seed=4).resolve(),
    }


@pytest.fixture(scope="module")
def plm_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_plm_models(tmp_path_factory.mktemp("mutual-models"))


def mutual_config(models: dict[str, Path], store: Path, data: Path | None, **overrides: Any) -> DistillConfig:
    """One cycle on the 40 example pairs with both tiny PLMs (seconds of compute on a CPU)."""
    plms = [
        PLMConfig(
            name=name,
            bi=BiEncoderConfig(model=str(path), fit=bi_fit_defaults(epochs=2, batch_size=8, eval_steps=3)),
            cross=CrossEncoderConfig(eval_max_length=64, fit=cross_fit_defaults(batch_size=8, eval_steps=4)),
            device="cpu",
            seed=11 + i,
        )
        for i, (name, path) in enumerate(models.items())
    ]
    values: dict[str, Any] = {
        "store": str(store),
        "pairs": str(EXAMPLE_PAIRS),
        "data": str(data) if data else str(store.parent / "no-benchmarks"),
        "eval_tasks": ["stsb"],
        "cycles": 1,
        "checkpoint_steps": 2,
        "plms": plms,
    }
    return DistillConfig(**{**values, **overrides})


def stage_runs(summary: dict[str, Any]) -> dict[tuple[str | None, str, int], bool]:
    """(model, stage, cycle) → cached; the final evaluations are keyed by their kind's cycle."""
    return {(s["model"], s["name"], s["cycle"]): s["cached"] for s in summary["stages"]}


def _numbers(value: Any) -> Any:
    """`value` without the store locations ("model", "uri"), which differ between stores."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items() if k not in ("model", "uri")}
    return [_numbers(v) for v in value] if isinstance(value, list) else value


def results_of(summary: dict[str, Any]) -> dict[str, Any]:
    """Everything a run reports about its models (what must not depend on how or where it ran)."""
    models = {n: {"start": m["start"], "best": m["best"]} for n, m in summary["models"].items()}
    return _numbers({"models": models, "ensembles": summary["ensembles"], "averages": summary["averages"]})


def overlapping(summary: dict[str, Any], a: str, b: str) -> list[str]:
    """Stages of model `a` that ran while the same stage of model `b` was running."""
    spans = {(s["model"], s["name"], s["cycle"]): (s["started"], s["finished"]) for s in summary["stages"]}
    return [
        f"{name}:{cycle}"
        for (model, name, cycle), (start, end) in spans.items()
        if model == a and (span := spans.get((b, name, cycle))) and start < span[1] and span[0] < end
    ]


@pytest.fixture(scope="module")
def reference(plm_models: dict[str, Path], data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An uninterrupted serial run (one PLM stage at a time)."""
    store = tmp_path_factory.mktemp("mutual-reference") / "store"
    return run_distill(mutual_config(plm_models, store, data_root), SERIAL)


def _stage_uri(summary: dict[str, Any], model: str | None, name: str, cycle: int) -> str:
    return next(
        s["uri"] for s in summary["stages"] if (s["model"], s["name"], s["cycle"]) == (model, name, cycle)
    )


def _table(store: Store, uri: str) -> Any:
    return pq.read_table(io.BytesIO(store.read_bytes(f"{uri}/labels.parquet")))


def test_serial_run_reports_each_model_the_ensembles_and_the_averaged_labels(reference: Any) -> None:
    s = reference
    assert set(s["models"]) == {"bert", "roberta"} and set(s["ensembles"]) == {"start_bi", "bi", "cross"}
    for model in s["models"].values():
        assert "stsb" in model["start"]["bi"]["test"] and model["best"]["cross"]["dev"] is not None
    best_cross = {n: m["best"]["cross"]["cycle"] for n, m in s["models"].items()}
    assert s["ensembles"]["cross"]["cycle"] == best_cross and "stsb" in s["ensembles"]["bi"]["test"]
    averaged = s["averages"][0]
    assert set(averaged["bi"]["agreement"]) == {"bert~roberta"} and averaged["cross"]["spread"] >= 0
    store = Store(s["config"]["store"])
    table = _table(store, averaged["bi"]["uri"])
    own = _table(store, _stage_uri(s, "bert", "bi_scores", 1))
    by_id = dict(zip(own["pair_id"].to_pylist(), own["score"].to_pylist(), strict=True))
    assert table["score__bert"].to_pylist() == [by_id[p] for p in table["pair_id"].to_pylist()]
    mean = (table["score__bert"].to_numpy().astype(np.float64) + table["score__roberta"].to_numpy()) / 2
    assert table["score"].to_numpy() == pytest.approx(mean, abs=1e-6)
    assert s["summary_uri"].endswith("/runs/default/summary.json")  # DistillConfig's default run_name
    written = store.read_json(s["summary_uri"])
    assert {"models", "ensembles", "averages", "stages", "config"} <= set(written)


def test_ensembles_average_the_members_saved_scores_and_equal_scoring_again(
    reference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ensemble stages reuse each member's saved per-pair scores (no model loaded) and get the
    numbers that scoring with every member again gets (what an older store without them does)."""
    store = Store(reference["config"]["store"])
    ensembles = [
        s for s in reference["stages"] if s["name"].startswith("evaluate_") and "_ensemble" in s["name"]
    ]
    assert len(ensembles) == 3 and store.exists(store.uri("predictions", "evaluate"))

    def drop_ensembles() -> None:
        for stage in ensembles:
            store.delete(stage["uri"])

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an ensemble of saved scores must not load a model")

    drop_ensembles()
    with monkeypatch.context() as patch:
        patch.setattr(encoders.BiEncoder, "from_pretrained", classmethod(refuse))
        patch.setattr(encoders.CrossEncoder, "from_pretrained", classmethod(refuse))
        reused = run_distill(DistillConfig(**reference["config"]), SERIAL)
    recomputed = {(s["name"], s["cycle"]) for s in reused["stages"] if not s["cached"]}
    assert recomputed == {(s["name"], s["cycle"]) for s in ensembles}
    assert _numbers(reused["ensembles"]) == _numbers(reference["ensembles"])

    drop_ensembles()
    store.delete(store.uri("predictions"))
    scored = run_distill(DistillConfig(**reference["config"]), SERIAL)
    assert _numbers(scored["ensembles"]) == _numbers(reference["ensembles"])
    assert results_of(scored) == results_of(reference)


def test_thread_pool_runs_the_plms_concurrently_and_a_rerun_is_fully_cached(
    plm_models: dict[str, Path], data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsup = InitConfig(simcse=simcse_defaults(fit=simcse_defaults().fit.model_copy(update={"batch_size": 8})))
    cfg = mutual_config(plm_models, tmp_path / "store", data_root, unsup=unsup)
    plms = [cfg.plms[0], cfg.plms[1].model_copy(update={"init_method": "simcse"})]
    cfg = cfg.model_copy(update={"plms": plms})
    first = run_distill(cfg, ThreadPoolTaskRunner(max_workers=2))
    assert not any(s["cached"] for s in first["stages"])
    assert overlapping(first, "bert", "roberta"), "the two PLMs' stages should run at the same time"
    init = _stage_uri(first, "roberta", "init_bi", 0)
    assert first["models"]["roberta"]["start"]["bi"]["model"] == init
    assert first["models"]["bert"]["start"]["bi"]["model"] == str(plm_models["bert"])

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cached run must not load a model")

    monkeypatch.setattr(encoders.BiEncoder, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(encoders.CrossEncoder, "from_pretrained", classmethod(refuse))
    second = run_distill(cfg, ThreadPoolTaskRunner(max_workers=2))
    assert second["all_cached"] and results_of(second) == results_of(first)


def test_failure_in_one_plm_resumes_only_that_stage_and_what_follows(
    plm_models: dict[str, Path],
    data_root: Path,
    reference: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = mutual_config(plm_models, tmp_path / "store", data_root)
    real = distill.load_encoder

    def failing(store: Store, ref: str, kind: str, *args: Any) -> Any:
        if ref == str(plm_models["roberta"]) and kind == "cross":
            raise RuntimeError("injected failure in roberta's cross-encoder")
        return real(store, ref, kind, *args)

    monkeypatch.setattr(distill, "load_encoder", failing)
    with pytest.raises(RuntimeError, match="injected failure in roberta"):
        run_distill(cfg, SERIAL)
    monkeypatch.setattr(distill, "load_encoder", real)
    resumed = run_distill(cfg, SERIAL)
    runs = stage_runs(resumed)
    cached = [
        (None, "ingest_pairs", 0),
        ("bert", "evaluate", 0),
        ("roberta", "evaluate", 0),
        ("bert", "bi_scores", 1),
        ("roberta", "bi_scores", 1),
        (None, "average_bi_scores", 1),
        ("bert", "train_cross", 1),  # the sibling of the failed stage finished and was committed
    ]
    assert all(runs[key] for key in cached), runs
    recomputed = [key for key, hit in runs.items() if not hit]
    assert ("roberta", "train_cross", 1) in recomputed and (None, "average_cross_scores", 1) in recomputed
    assert set(recomputed) == set(runs) - set(cached)
    assert results_of(resumed) == results_of(reference)


def test_config_rejects_bad_plm_lists(plm_models: dict[str, Path], tmp_path: Path) -> None:
    from pydantic import ValidationError

    cfg = mutual_config(plm_models, tmp_path / "store", None)
    with pytest.raises(ValidationError, match="at least 1 item"):
        cfg.model_validate({**cfg.model_dump(), "plms": []})
    single = cfg.model_validate({**cfg.model_dump(), "plms": cfg.model_dump()["plms"][:1]})
    assert not single.mutual and cfg.mutual  # one PLM is self-distillation
    twice = [cfg.plms[0].model_dump(), cfg.plms[0].model_dump()]
    with pytest.raises(ValidationError, match="distinct names"):
        cfg.model_validate({**cfg.model_dump(), "plms": twice})
    with pytest.raises(ValidationError, match="Model names expect"):
        PLMConfig(name="a/b")
    assert [p.name for p in preset_config("paper-mutual").plms] == ["bert", "roberta"]
    assert [p.name for p in DistillConfig().plms] == ["packaged"]


def test_runner_choice_and_device_assignment(
    plm_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_dask import DaskTaskRunner

    from trans_encoder_core.errors import ConfigError

    cfg = mutual_config(plm_models, tmp_path / "store", None)
    monkeypatch.delenv("TRANS_ENCODER_DASK_ADDRESS", raising=False)
    monkeypatch.setattr("flows.distill.visible_gpus", lambda: 0)
    runner = task_runner_for(cfg)
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 1  # CPU: one PLM at a time
    monkeypatch.setattr("flows.distill.visible_gpus", lambda: 2)
    assert task_runner_for(cfg)._max_workers == 2
    monkeypatch.setenv("TRANS_ENCODER_DASK_ADDRESS", "tcp://127.0.0.1:8786")
    dask = task_runner_for(cfg)
    assert isinstance(dask, DaskTaskRunner) and dask.address == "tcp://127.0.0.1:8786"
    with pytest.raises(ConfigError, match="store its workers can reach"):
        task_runner_for(cfg.model_copy(update={"store": "memory://x"}))
    monkeypatch.setattr("tasks.averaging.visible_gpus", lambda: 2)
    assert assign_devices(["auto", "cpu", "auto"], spread=True) == ["cuda:0", "cpu", "cuda:0"]
    assert assign_devices(["auto", "auto"], spread=True) == ["cuda:0", "cuda:1"]
    assert assign_devices(["auto", "auto"], spread=False) == ["auto", "auto"]
    monkeypatch.setattr("tasks.averaging.visible_gpus", lambda: 1)
    assert assign_devices(["auto", "auto"], spread=True) == ["auto", "auto"]


def _cli_args(*extra: str) -> Any:
    from flows.cli import build_parser

    return build_parser().parse_args(["mutual-distill", *extra])


def test_cli_makes_one_plm_per_model_seed_and_pooling() -> None:
    from flows.cli_common import UsageError
    from flows.cli_distill import build_config

    def build_mutual_config(args: Any) -> DistillConfig:
        return build_config(args, min_plms=2)

    cfg = build_mutual_config(
        _cli_args("--preset", "quick", "--seeds", "1,2", "--set", "plms.bi.fit.epochs=2")
    )
    assert [(p.name, p.seed, p.bi.model) for p in cfg.plms] == [
        ("packaged-s1", 1, "packaged"),
        ("packaged-s2", 2, "packaged"),
    ]
    assert cfg.pool == "stsb" and cfg.cycles == 1 and all(p.bi.fit.epochs == 2 for p in cfg.plms)
    cfg = build_mutual_config(_cli_args("--poolings", "cls,mean", "--set", "plms.packaged-mean.seed=7"))
    assert [(p.name, p.bi.pooling, p.seed) for p in cfg.plms] == [
        ("packaged-cls", "cls", 2021),
        ("packaged-mean", "mean", 7),
    ]
    models = [
        "--model",
        "org/bert-x",
        "--model",
        "org/roberta-x",
        "--cross-model",
        "bert",
        "--cross-model",
        "roberta",
    ]
    cfg = build_mutual_config(
        _cli_args(*models, "--init", "simcse", "--dask", "tcp://10.0.0.1:8786", "--set", "cycles=2")
    )
    assert [(p.name, p.cross.model, p.init_method) for p in cfg.plms] == [
        ("bert-x", "bert", "simcse"),
        ("roberta-x", "roberta", "simcse"),
    ]
    assert cfg.dask_address == "tcp://10.0.0.1:8786" and cfg.cycles == 2
    with pytest.raises(UsageError, match="at least 2 PLMs"):
        build_mutual_config(_cli_args("--model", "packaged"))


def test_cli_runs_end_to_end_and_writes_the_summary(
    plm_models: dict[str, Path], data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    summary_file = tmp_path / "summary.json"
    fit = ["plms.bi.fit.epochs=1", "plms.bi.fit.batch_size=8", "plms.cross.fit.batch_size=8"]
    fit += ["plms.cross.eval_max_length=64", 'eval_tasks=["stsb"]', "checkpoint_steps=0"]
    sets = [arg for item in fit for arg in ("--set", item)]
    args = ["mutual-distill", "--model", str(plm_models["bert"]), "--seeds", "1,2", "--cycles", "1"]
    args += ["--pairs", str(EXAMPLE_PAIRS), "--data", str(data_root), "--store", str(tmp_path / "store")]
    assert main([*args, "--summary", str(summary_file), *sets]) == 0
    out = capsys.readouterr().out
    for row in ("bert-s1 start bi", "bert-s2 best cross", "ensemble bi", "ensemble cross", "label agreement"):
        assert row in out
    summary = json.loads(summary_file.read_text())
    assert set(summary["models"]) == {"bert-s1", "bert-s2"} and set(summary["ensembles"]) == {
        "start_bi",
        "bi",
        "cross",
    }
