"""bench/quality.py's table logic: missing tasks are shown, never averaged away."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "quality.py"
_SPEC = importlib.util.spec_from_file_location("bench_quality", _PATH)
quality = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(quality)  # type: ignore[union-attr]

SIX = {"sts12": 70.0, "sts13": 80.0, "sts14": 75.0, "sts15": 85.0, "sts16": 78.0, "stsb": 82.0}


def _entry(shift: float, sickr: float | None = None) -> dict[str, Any]:
    test = {k: v + shift for k, v in SIX.items()} | ({"sickr": sickr} if sickr is not None else {})
    return {"cycle": 1, "dev": 86.0 + shift, "test": test}


def _self_summary(shift: float, sickr: float | None = None) -> dict[str, Any]:
    model = {
        "start": {"bi": _entry(0.0, sickr)},
        "best": {"bi": _entry(shift, sickr), "cross": _entry(2 * shift, sickr)},
    }
    return {"config": {"seed": 1}, "models": {"packaged": model}, "ensembles": {}}


def test_missing_task_gives_no_seven_task_average_but_a_labelled_one() -> None:
    row = quality.table_row("TEnc bi", _entry(1.0))
    assert row["sickr"] is None and row["avg"] is None and row["n_available"] == 6
    assert row["avg_available"] == pytest.approx(sum(SIX.values()) / 6 + 1.0)
    table = quality.format_table([row], "t")
    assert "| missing |" in table and "| n/a |" in table and "Avg (6 present)" in table


def test_full_data_gives_the_seven_task_average() -> None:
    row = quality.table_row("x", _entry(0.0, sickr=74.0))
    assert row["avg"] == pytest.approx((sum(SIX.values()) + 74.0) / 7) == row["avg_available"]


def test_mean_over_seeds_row_by_row() -> None:
    per_seed = [quality.summary_rows(_self_summary(s)) for s in (1.0, 3.0)]
    means = quality.mean_rows(per_seed)
    assert [r["model"] for r in means] == ["start bi", "TEnc bi", "TEnc cross"]
    assert means[1]["stsb"] == pytest.approx(84.0) and means[2]["stsb"] == pytest.approx(86.0)
    assert means[1]["stsb_sd"] == pytest.approx(2**0.5)
    assert quality.missing_tasks(means) == ["sickr"]


def test_mutual_summary_rows_list_each_model_then_the_ensembles() -> None:
    model = {"start": {"bi": _entry(0.0)}, "best": {"bi": _entry(1.0), "cross": _entry(2.0)}}
    summary = {
        "models": {"a": model, "b": model},
        "ensembles": {"start_bi": _entry(0.5), "bi": _entry(1.5), "cross": _entry(2.5)},
    }
    labels = [r["model"] for r in quality.summary_rows(summary)]
    assert labels[:3] == ["PLM 1 start bi", "PLM 1 TEnc bi", "PLM 1 TEnc cross"]
    assert [r.get("name") for r in quality.summary_rows(summary)][3:6] == ["b", "b", "b"]
    assert labels[-3:] == ["ensemble start bi", "ensemble TEnc bi", "ensemble TEnc cross"]


def test_mean_refuses_rows_that_do_not_line_up() -> None:
    rows = quality.summary_rows(_self_summary(1.0))
    with pytest.raises(ValueError, match="same rows"):
        quality.mean_rows([rows, rows[::-1]])
