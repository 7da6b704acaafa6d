"""bench/binary.py's table logic: Table 11's rows (start bi, TEnc bi, TEnc cross) and their means."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "binary.py"
_SPEC = importlib.util.spec_from_file_location("bench_binary", _PATH)
binary = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(binary)  # type: ignore[union-attr]


def _summary(shift: float) -> dict[str, Any]:
    def entry(value: float, cycle: int) -> dict[str, Any]:
        metrics = {"dev": "roc_auc", "mrpc": "roc_auc"}
        return {"cycle": cycle, "dev": value + 1.0, "test": {"mrpc": value}, "metrics": metrics}

    model = {"start": {"bi": entry(70.0, 0)}, "best": {"bi": entry(72.0 + shift, 1), "cross": entry(74.0, 1)}}
    return {"config": {"seed": 1}, "models": {"packaged": model}}


def test_rows_follow_table_11_and_means_are_per_row() -> None:
    rows = [binary.summary_rows(_summary(s)) for s in (0.0, 2.0)]
    assert [r["model"] for r in rows[0]] == ["start bi", "TEnc bi", "TEnc cross"]
    assert rows[1][1]["mrpc"] == 74.0 and rows[1][1]["metrics"]["mrpc"] == "roc_auc"
    mean = binary.mean_rows(rows)
    assert mean[1]["mrpc"] == pytest.approx(73.0) and mean[1]["dev"] == pytest.approx(74.0)
    assert mean[0]["mrpc"] == pytest.approx(70.0)
    assert "TEnc cross" in binary.format_table(mean, "mean")


def test_a_failed_run_ends_the_benchmark_with_one_line() -> None:
    import sys

    sys.path.insert(0, str(_PATH.parent))
    from cli_runs import run_cli

    assert run_cli([sys.executable, "-c", "pass"]) >= 0
    with pytest.raises(SystemExit) as failed:
        run_cli([sys.executable, "-c", "raise SystemExit(3)"])
    message = str(failed.value)
    assert message.startswith("error: the run above exited with status 3;") and "\n" not in message
