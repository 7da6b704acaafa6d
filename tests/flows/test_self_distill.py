"""Self-distillation flow: caching, invalidation, resume after failures, summary contents."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from flows.distill import distill
from tasks.store import Store
from tests.flows.conftest import only_model, stage_runs, with_plm
from tests.tiny_data import spearman_x100
from trans_encoder_core import encoders
from trans_encoder_core.machine import machine_info


def _best_scores(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: (v["cycle"], v["test"], v["dev"]) for k, v in only_model(summary)["best"].items()}


def test_second_run_is_fully_cached_and_loads_no_model(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config()
    first = distill(cfg)
    assert not any(s["cached"] for s in first["stages"])
    assert [c["cycle"] for c in only_model(first)["cycles"]] == [1, 2]
    assert (
        set(only_model(first)["best"]) == {"bi", "cross"}
        and "stsb" in only_model(first)["best"]["cross"]["test"]
    )
    assert only_model(first)["start"]["bi"]["test"]["stsb"] == pytest.approx(
        spearman_x100(cfg.plms[0].bi.model, cfg.data), abs=1e-6
    )

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cached run must not load a model")

    monkeypatch.setattr(encoders.BiEncoder, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(encoders.CrossEncoder, "from_pretrained", classmethod(refuse))
    second = distill(cfg)
    assert all(s["cached"] for s in second["stages"]) and second["all_cached"]
    assert _best_scores(second) == _best_scores(first)
    summary = Store(cfg.store).read_json(second["summary_uri"])
    assert {"stages", "models", "config"} <= set(summary) and not summary["ensembles"]
    assert {"start", "cycles", "best"} <= set(only_model(summary))
    assert {"name", "cycle", "cached", "seconds"} <= set(summary["stages"][0])
    # the machine its seconds were measured on, as the core reads it
    assert summary["machine"] == json.loads(json.dumps(machine_info()))


def test_config_change_recomputes_only_affected_stages(make_config: Any) -> None:
    cfg = make_config()
    distill(cfg)
    bi = cfg.plms[0].bi
    changed = with_plm(
        cfg, bi=bi.model_copy(update={"fit": bi.fit.model_copy(update={"learning_rate": 1e-4})})
    )
    runs = stage_runs(distill(changed))
    for stage in [("ingest_pairs", 0), ("bi_scores", 1), ("train_cross", 1), ("cross_scores", 1)]:
        assert runs[stage], f"{stage} should come from the cache"
    for stage in [
        ("train_bi", 1),
        ("bi_scores", 2),
        ("train_cross", 2),
        ("cross_scores", 2),
        ("train_bi", 2),
    ]:
        assert not runs[stage], f"{stage} should be recomputed"


def test_label_calibration_recomputes_bi_training_only(make_config: Any) -> None:
    cfg = make_config(cycles=1, bi_label_mix=0.5)
    first = distill(cfg)
    calibrated = distill(cfg.model_copy(update={"bi_label_calibration": "quantile"}))
    runs = stage_runs(calibrated)
    cached = [("ingest_pairs", 0), ("bi_scores", 1), ("train_cross", 1), ("cross_scores", 1)]
    assert all(runs[s] for s in cached)
    assert not runs[("train_bi", 1)]
    bi_first, bi_calibrated = (
        next(s["uri"] for s in r["stages"] if s["name"] == "train_bi") for r in (first, calibrated)
    )
    assert bi_first != bi_calibrated
    # switching the option back finds every output of the first run
    assert all(stage_runs(distill(cfg)).values())


def test_deleted_output_recomputes_just_that_stage(make_config: Any) -> None:
    cfg = make_config()
    first = distill(cfg)
    victim = next(s for s in first["stages"] if s["name"] == "cross_scores" and s["cycle"] == 1)
    shutil.rmtree(Store(cfg.store).path(victim["uri"]))
    runs = stage_runs(distill(cfg))
    assert not runs[("cross_scores", 1)]
    assert all(cached for key, cached in runs.items() if key != ("cross_scores", 1))


def test_corrupted_output_is_detected_and_recomputed(make_config: Any) -> None:
    cfg = make_config()
    first = distill(cfg)
    victim = next(s for s in first["stages"] if s["name"] == "bi_scores" and s["cycle"] == 2)
    labels = Path(Store(cfg.store).path(victim["uri"])) / "labels.parquet"
    labels.write_bytes(labels.read_bytes()[:-20] + b"\0" * 20)
    second = distill(cfg)
    assert not stage_runs(second)[("bi_scores", 2)]
    assert _best_scores(second) == _best_scores(first)


def test_failure_in_cycle_two_resumes_from_the_failed_stage(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = distill(make_config(store=str(tmp_path / "reference")))
    cfg = make_config()
    monkeypatch.setenv("TRANS_ENCODER_FAULT", "train_cross:2")
    with pytest.raises(RuntimeError, match="injected failure in stage train_cross of cycle 2"):
        distill(cfg)
    monkeypatch.delenv("TRANS_ENCODER_FAULT")
    runs = stage_runs(resumed := distill(cfg))
    before = [
        ("ingest_pairs", 0),
        ("bi_scores", 1),
        ("train_cross", 1),
        ("cross_scores", 1),
        ("train_bi", 1),
        ("bi_scores", 2),
    ]
    assert all(runs[s] for s in before)
    assert not any(runs[s] for s in [("train_cross", 2), ("cross_scores", 2), ("train_bi", 2)])
    assert _best_scores(resumed) == _best_scores(reference)


def test_memory_store_runs_and_caches(make_config: Any) -> None:
    cfg = make_config(store="memory://flow-test", cycles=1)
    assert not any(s["cached"] for s in distill(cfg)["stages"])
    assert all(s["cached"] for s in distill(cfg)["stages"])


def test_config_rejects_bad_values_before_any_stage(make_config: Any) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cycles"):
        make_config(cycles=0)
    with pytest.raises(ValidationError, match="run_name"):
        make_config(run_name="../escape")


def test_bf16_scoring_is_keyed_recorded_and_leaves_fp32_keys_alone(make_config: Any) -> None:
    """`score_precision` (labelling and final evaluations): bf16 gives the scoring stages their own
    keys and says so in their metrics; switching back to fp32 finds the first run's outputs."""
    cfg = make_config(cycles=1)
    first = distill(cfg)
    plm = cfg.plms[0]
    bf16 = with_plm(
        cfg,
        bi=plm.bi.model_copy(update={"score_precision": "bf16"}),
        cross=plm.cross.model_copy(update={"score_precision": "bf16"}),
    )
    second = distill(bf16)
    runs = stage_runs(second)
    assert runs[("ingest_pairs", 0)]
    for stage in [("bi_scores", 1), ("cross_scores", 1)]:
        assert not runs[stage], f"{stage} should score again in bf16"
    store = Store(cfg.store)

    def metrics(summary: dict[str, Any], name: str) -> list[dict[str, Any]]:
        return [store.verify(s["uri"]).meta["metrics"] for s in summary["stages"] if s["name"] == name]

    assert all(m["precision"] == "bf16" for n in ("bi_scores", "cross_scores") for m in metrics(second, n))
    assert not any("precision" in m for m in metrics(first, "bi_scores") + metrics(first, "cross_scores"))
    evaluations = [s for s in second["stages"] if s["name"] == "evaluate"]
    assert evaluations and not any(s["cached"] for s in evaluations)
    for stage in evaluations:
        assert set(store.read_json(f"{stage['uri']}/results.json")["precisions"].values()) == {"bf16"}
    assert all(stage_runs(distill(cfg)).values())


def test_score_precision_is_not_part_of_the_training_keys() -> None:
    from tasks import keys
    from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig

    ref = {"digest": "d", "uri": "u", "ref": "r"}
    bi, cross = BiEncoderConfig(), CrossEncoderConfig()
    bi16, cross16 = (c.model_copy(update={"score_precision": "bf16"}) for c in (bi, cross))
    mix = {"mix_labels": None, "mix_weight": 0.0, "calibrate": False}
    assert keys.train_bi(bi16, ref, ref, None, **mix) == keys.train_bi(bi, ref, ref, None, **mix)
    assert keys.train_cross(cross16, ref, ref, None) == keys.train_cross(cross, ref, ref, None)
    assert keys.bi_scores(bi, ref, ref) == keys.bi_scores(bi16, ref, ref)  # the task adds the resolved one
    assert keys.bi_scores(bi, ref, ref, "bf16")[0]["precision"] == "bf16"
