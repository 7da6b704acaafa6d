"""Retraining on inbox pairs: pool merge, registry publish and gate, ledger after publish, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from flows.config import single_plm_config
from flows.report import chart_lines, cycle_rows, markdown_report, write_plot
from flows.retrain import RetrainConfig, retrain, run_config, with_store
from tasks.inbox import add_pair_file, pending_files, read_ledger
from tasks.registry import list_versions, publish_version, read_version
from tasks.retrain import publish_candidate
from tasks.store import Store
from tests.flows.conftest import EXAMPLE_PAIRS, only_model, stage_runs
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig, bi_fit_defaults, cross_fit_defaults
from trans_encoder_core.pairs import make_pairs_table, merge_pair_tables

LINES = EXAMPLE_PAIRS.read_text().splitlines()


def _pair_file(folder: Path, name: str, rows: slice) -> Path:
    path = folder / name
    path.write_text("\n".join([LINES[0], *LINES[1:][rows]]) + "\n")
    return path


@pytest.fixture
def config(flow_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RetrainConfig:
    """One cycle on a tiny model without benchmark data (no dev score: every version is published)."""
    monkeypatch.delenv("TRANS_ENCODER_DATA", raising=False)
    monkeypatch.delenv("TRANS_ENCODER_FAULT", raising=False)
    distill = single_plm_config(
        run_name="rt",
        store=str(tmp_path / "store"),
        eval_tasks=["stsb"],
        cycles=1,
        checkpoint_steps=0,
        device="cpu",
        bi=BiEncoderConfig(model=str(flow_model), fit=bi_fit_defaults(epochs=1, batch_size=16)),
        cross=CrossEncoderConfig(eval_max_length=64, fit=cross_fit_defaults(epochs=1, batch_size=16)),
    )
    return RetrainConfig(distill=distill)


def test_retrain_publishes_then_skips_then_continues_from_the_latest_model(
    config: RetrainConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(config.distill.store)
    add_pair_file(store, str(_pair_file(tmp_path, "a.csv", slice(0, 20))))
    first = retrain(config)
    assert (first["status"], first["version"], first["files"]) == ("published", 1, ["a.csv"])
    v1 = read_version(store, 1)
    assert v1["pool"]["pairs"] == 20 and v1["inbox"] == ["a.csv"] and v1["parent"] is None
    assert all(store.verify(v1["models"][kind]) is not None for kind in ("bi", "cross"))
    assert set(read_ledger(store)) == {"a.csv"} and read_ledger(store)["a.csv"]["version"] == 1
    summary = store.read_json(first["summary_uri"])
    assert only_model(summary)["cycles"][0]["labels"]["agreement"] is not None
    assert store.read_bytes(summary["plot_uri"]).startswith(b"\x89PNG\r\n\x1a\n")

    assert retrain(config)["status"] == "skipped" and list_versions(store) == [1]

    add_pair_file(store, str(_pair_file(tmp_path, "b.csv", slice(17, 40))))  # 3 pairs already in a.csv
    second = retrain(config)
    assert (second["status"], second["version"], second["parent"]) == ("published", 2, 1)
    v2 = read_version(store, 2)
    assert (
        v2["pool"]["pairs"] == 40 and v2["new_files"] == ["b.csv"] and set(v2["inbox"]) == {"a.csv", "b.csv"}
    )
    (plm,) = v1["plms"].values()  # the one PLM, named after its model folder
    assert v2["config"]["plms"][0]["bi"]["model"] == v1["models"]["bi"] == plm["bi"]
    assert pending_files(store) == []

    assert main(["models", "list", "--store", store.root]) == 0
    listing = capsys.readouterr().out
    assert "*      2" in listing and "b.csv" in listing
    assert main(["models", "show", "1", "--store", store.root]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1


def test_a_failed_retrain_records_nothing_and_resumes_from_its_cache(
    config: RetrainConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(config.distill.store)
    add_pair_file(store, str(_pair_file(tmp_path, "a.csv", slice(0, 12))))
    monkeypatch.setenv("TRANS_ENCODER_FAULT", "train_bi:1")
    with pytest.raises(RuntimeError, match="injected failure in stage train_bi"):
        retrain(config)
    assert list_versions(store) == [] and read_ledger(store) == {}
    assert [f["name"] for f in pending_files(store)] == ["a.csv"]
    monkeypatch.delenv("TRANS_ENCODER_FAULT")
    result = retrain(config)
    assert result["version"] == 1 and set(read_ledger(store)) == {"a.csv"}
    runs = stage_runs(store.read_json(result["summary_uri"]))
    assert runs[("ingest_pairs", 0)] and runs[("bi_scores", 1)] and runs[("train_cross", 1)]
    assert not runs[("train_bi", 1)]


def _candidate(dev: float) -> dict[str, Any]:
    entry = {"model": "m", "cycle": 1, "dev": dev, "test": {}, "average": None}
    return {"models": {"packaged": {"best": {"bi": entry, "cross": entry}}}, "config": {}}


def test_a_worse_model_is_not_published_and_its_files_stay_pending(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "store"))
    entry = add_pair_file(store, str(_pair_file(tmp_path, "a.csv", slice(0, 5))))
    latest = publish_version(store, {"models": {}, "metrics": {"bi": {"dev": 80.0}}, "inbox": []})
    pool = {"uri": "pool", "digest": "d", "metrics": {"n_pairs": 5}, "files": [entry]}
    kwargs = {"tolerance": 1.0, "gate_on": "bi", "run": {"name": "x"}}
    rejected = publish_candidate.fn(store.root, _candidate(78.5), pool, latest, **kwargs)
    assert rejected["version"] is None and not rejected["decision"]["publish"]
    assert list_versions(store) == [1] and [f["name"] for f in pending_files(store)] == ["a.csv"]
    accepted = publish_candidate.fn(store.root, _candidate(79.5), pool, latest, **kwargs)
    assert accepted["version"] == 2 and accepted["record"]["parent"] == 1
    assert pending_files(store) == [] and read_ledger(store)["a.csv"]["version"] == 2


def test_the_gate_compares_dev_scores_only_on_the_same_dev_set(tmp_path: Path) -> None:
    """A version selected on one dev file is not held back by a score on another (issue 13)."""
    store = Store(str(tmp_path / "store"))
    pool = {"uri": "pool", "digest": "d", "metrics": {"n_pairs": 5}, "files": []}
    kwargs = {"tolerance": 1.0, "gate_on": "bi", "run": {"name": "x"}}
    mine = {"name": "dev", "metric": "roc_auc", "source": "dev.csv", "digest": "abc", "n": 40}
    first = publish_candidate.fn(
        store.root, _candidate(90.0) | {"eval_sets": {"dev": mine}}, pool, None, **kwargs
    )
    assert first["record"]["dev_set"] == mine
    lower = _candidate(60.0) | {"eval_sets": {"dev": mine}}
    assert not publish_candidate.fn(store.root, lower, pool, first["record"], **kwargs)["decision"]["publish"]
    other = _candidate(60.0) | {"eval_sets": {"dev": mine | {"digest": "def"}}}
    decision = publish_candidate.fn(store.root, other, pool, first["record"], **kwargs)["decision"]
    assert decision["publish"] and "dev set differs" in decision["reason"]


def test_merge_keeps_the_first_copy_of_each_pair() -> None:
    old, _ = make_pairs_table(["a", "b"], ["x", "y"])
    new, _ = make_pairs_table(["b", "c"], ["y", "z"])
    merged, duplicates = merge_pair_tables([old, new])
    assert merged["sentence1"].to_pylist() == ["a", "b", "c"] and duplicates == 1
    with pytest.raises(ValueError, match="got none"):
        merge_pair_tables([])


def test_config_rules(config: RetrainConfig) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="distill.pairs unset"):
        RetrainConfig(distill=config.distill.model_copy(update={"pairs": "x.csv"}))
    assert with_store(config, "/elsewhere").distill.store == "/elsewhere"
    assert with_store(config, None) is config
    pool = {"pairs_uri": "/s/stages/merge_pool/k/pairs.parquet"}
    latest = {"models": {"bi": "/s/bi", "cross": "/s/cross"}}
    first = run_config(config, pool, None, 1)
    assert (first.pairs, first.run_name, first.plms[0].bi.model) == (
        pool["pairs_uri"],
        "rt-v000001",
        config.distill.plms[0].bi.model,
    )
    later = run_config(config.model_copy(update={"continue_cross": True}), pool, latest, 4)
    plm = later.plms[0]
    assert (plm.bi.model, plm.cross.model, later.run_name) == ("/s/bi", "/s/cross", "rt-v000004")


def test_a_mutual_run_continues_each_plm_from_its_own_models(config: RetrainConfig) -> None:
    two = [p.model_copy(update={"name": n}) for p, n in zip(config.distill.plms * 2, ("a", "b"), strict=True)]
    mutual = config.model_copy(update={"distill": config.distill.model_copy(update={"plms": two})})
    latest = {
        "models": {"bi": "/s/a-bi", "cross": "/s/a-cross"},
        "plms": {
            "a": {"bi": "/s/a-bi", "cross": "/s/a-cross"},
            "b": {"bi": "/s/b-bi", "cross": "/s/b-cross"},
        },
    }
    later = run_config(mutual, {"pairs_uri": "/s/p.parquet"}, latest, 2)
    assert [(p.name, p.bi.model, p.cross.model) for p in later.plms] == [
        ("a", "/s/a-bi", config.distill.plms[0].cross.model),
        ("b", "/s/b-bi", config.distill.plms[0].cross.model),
    ]
    # a version written before versions recorded models per PLM starts no PLM of a mutual run
    old = run_config(mutual, {"pairs_uri": "/s/p.parquet"}, {"models": latest["models"]}, 2)
    assert [p.bi.model for p in old.plms] == [p.bi.model for p in two]


def test_report_tables_and_plot(tmp_path: Path) -> None:
    labels = {"mean": 0.5, "std": 0.1, "out_of_range": 0}
    model = {
        "start": {"bi": {"cycle": 0, "dev": 70.0, "test": {}, "average": None}},
        "best": {k: {"cycle": 1, "dev": 75.0, "test": {}, "average": None} for k in ("bi", "cross")},
        "cycles": [
            {
                "cycle": 1,
                "bi": {"dev": 75.0},
                "cross": {"dev": 74.0},
                "labels": {"bi": labels, "cross": labels, "agreement": 61.0},
            },
        ],
    }
    summary = {
        "run_name": "r",
        "stages": [{"cached": True}],
        "models": {"m": model},
        "ensembles": {},
        "averages": [],
    }
    rows = cycle_rows(summary)
    assert [(r["model"], r["trained on"]) for r in rows] == [("cross", "bi labels"), ("bi", "cross labels")]
    assert rows[0]["bi-cross agreement"] == 61.0
    lines = chart_lines(summary)
    assert [(line.model, line.set) for line in lines] == [
        ("m bi", "STS-B dev"),
        ("m cross", "STS-B dev"),
        ("m bi vs cross", "label agreement"),
    ]
    assert lines[0].points == [(0, 70.0), (1, 75.0)]
    plot = write_plot(Store(str(tmp_path / "s")), summary)
    assert plot is not None and Path(plot["uri"]).read_bytes().startswith(b"\x89PNG")
    text = markdown_report(summary, plot)
    assert "## Per cycle" in text and "data:image/png;base64," in text and "| start bi |" in text
