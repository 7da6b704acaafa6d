"""bench/speed.py's pure parts: padded-token counts, the comparison row, the table, the settings."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

_BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(_BENCH) not in sys.path:
    sys.path.append(str(_BENCH))  # bench/ is not a package; appended so it never shadows anything

import speed  # noqa: E402
import speed_common  # noqa: E402
import speed_report  # noqa: E402
import speed_suite  # noqa: E402
import speed_tokens  # noqa: E402

from trans_encoder_core.config import (  # noqa: E402
    BiEncoderConfig,
    CrossEncoderConfig,
    bi_fit_defaults,
    cross_fit_defaults,
)


def test_padded_counts_rows_times_the_longest_row_per_batch() -> None:
    lengths = np.array([3, 5, 2, 7])
    batches = [np.array([0, 1]), np.array([2, 3]), np.array([], dtype=int)]
    assert speed_tokens.padded(lengths, batches) == 2 * 5 + 2 * 7
    assert [list(c) for c in speed_tokens.chunks(np.arange(5), 2)] == [[0, 1], [2, 3], [4]]


def test_bi_score_work_counts_distinct_sentences_once_and_their_columns_separately() -> None:
    # Rows (aa, aa) and (b, cccc): three distinct texts.
    texts, index = ["aa", "b", "cccc"], np.array([0, 1, 0, 2])
    lengths = np.array([2, 1, 4])
    work = speed_tokens.bi_score_work(texts, index, lengths, n_a=2, batch_size=2)
    # Ours: distinct texts by token length, batches [cccc, aa] and [b]: 2*4 + 1*1.
    assert work["ours"] == 9
    # Theirs: column a = [aa, b] padded to 2, column b = [aa, cccc] padded to 4.
    assert work["st"] == 2 * 2 + 2 * 4
    assert work["real_tokens"] == 2 + 1 + 2 + 4 == int(lengths[index].sum())
    assert work["work_ratio"] == pytest.approx(12 / 9)


def test_train_bi_work_pads_both_columns_together_for_ours() -> None:
    la, lb = np.array([3, 1, 4, 1]), np.array([2, 6, 1, 1])
    work = speed_tokens.train_bi_work(la, lb, [np.array([0, 1]), np.array([2, 3])])
    assert work["ours"] == 2 * 2 * 6 + 2 * 2 * 4
    assert work["st"] == (2 * 3 + 2 * 4) + (2 * 6 + 2 * 1)
    assert work["real_tokens"] == 19
    assert work["work_ratio"] == pytest.approx(28 / 40)


def _side(examples: int, seconds: float, **extra: Any) -> dict[str, Any]:
    base = {"examples": examples, "seconds": seconds, "cpu_seconds": seconds, "load_average_1min": [1, 1]}
    return {**base, "peak_rss_mb": 500.0, "peak_rss_delta_mb": 50.0, **extra}


def test_compare_training_ratio_and_loss_agreement() -> None:
    ours = _side(64, 2.0, losses=[0.5, 0.4], steps=2, step_seconds=[1.0, 1.0])
    theirs = _side(64, 4.0, losses=[0.5, 0.1], steps=2, step_seconds=[3.0, 1.0])
    stats = {"padded_tokens": {"train_bi": {"ours": 40, "st": 28, "work_ratio": 0.7}}}
    row = speed_report.compare("train_bi", ours, theirs, stats)
    assert row["ratio"] == pytest.approx((64 / 2.0) / (64 / 4.0))
    assert row["loss_curve_max_abs_diff"] == pytest.approx(0.3)
    assert row["first_loss_abs_diff"] == 0.0
    assert row["median_step_s"] == [1.0, 2.0] and row["median_step_ratio"] == pytest.approx(2.0)
    assert row["padded_tokens"] == [40, 28] and row["peak_rss_mb"] == [500.0, 500.0]


def test_compare_scoring_reads_both_score_files(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([0.1, 0.5], dtype=np.float32))
    np.save(tmp_path / "t.npy", np.array([0.1, 0.25], dtype=np.float32))
    ours = _side(2, 1.0, scores_path=str(tmp_path / "o.npy"))
    theirs = _side(2, 3.0, scores_path=str(tmp_path / "t.npy"))
    stats = {"padded_tokens": {}, "rows": {"cross": 2}, "repeat_factor": {"cross": 1.0}}
    row = speed_report.compare("cross", ours, theirs, stats)
    assert row["ratio"] == pytest.approx(3.0)
    assert row["max_abs_score_diff"] == pytest.approx(0.25)
    assert row["rows"] == 2 and "work_ratio" not in row


def test_format_table_shows_numbers_memory_and_failures() -> None:
    ours = _side(64, 2.0, losses=[0.5], steps=1, step_seconds=[2.0])
    theirs = _side(64, 4.0, losses=[0.5], steps=1, step_seconds=[4.0])
    row = speed_report.compare("train_bi", ours, theirs, {"padded_tokens": {}})
    table = speed_report.format_table([row, {"measurement": "cross", "error": "boom"}]).splitlines()
    assert table[0].startswith("| measurement | ours (ex/s)")
    assert table[2].startswith("| train_bi | 32.0 | 16.0 | 2.00 | 500/500 (+50/+50) | 1 steps")
    assert table[3] == "| cross | | | | | FAILED: boom |"
    assert speed_report.median([3.0, 1.0, 2.0, 10.0]) == 2.5 and speed_report.median([]) is None


def test_constants_are_the_core_defaults() -> None:
    bi, cross = BiEncoderConfig(), CrossEncoderConfig()
    assert speed.BATCH == {
        "bi_score": bi.score_batch_size,
        "cross_score": cross.score_batch_size,
        "train_cross": cross_fit_defaults().batch_size,
        "train_bi": bi_fit_defaults().batch_size,
    }
    assert speed.LENGTH == {"bi": bi.max_seq_length, "cross": cross.max_length}
    assert speed.LR["train_cross"] == cross_fit_defaults().learning_rate
    assert speed.WARMUP_RATIO["train_bi"] == bi_fit_defaults().warmup_ratio


def test_default_data_is_the_environment_or_next_to_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANS_ENCODER_DATA", "/somewhere/sts")
    assert speed_common.default_data() == "/somewhere/sts"
    monkeypatch.delenv("TRANS_ENCODER_DATA")
    expected = Path(__file__).resolve().parents[2] / "shared" / "data" / "sts"
    assert Path(speed_common.default_data()) == expected


def test_measurement_spec_picks_the_steps_of_each_training() -> None:
    sizes = {"cross_steps": 8, "bi_steps": 3, "match_steps": 2}
    assert speed_suite.measurement_spec({}, "train_cross", sizes)["steps"] == 8
    assert speed_suite.measurement_spec({}, "train_bi", sizes)["steps"] == 3
    nodrop = speed_suite.measurement_spec({}, "train_bi_nodrop", sizes)
    assert nodrop["steps"] == 2 and nodrop["nodrop"]
    assert "steps" not in speed_suite.measurement_spec({}, "cross", sizes)


def test_their_precision_changes_only_the_sentence_transformers_side(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, str] = {}

    def fake_measurement(spec: dict[str, Any], in_process: bool) -> dict[str, Any]:
        seen[spec["impl"]] = spec["precision"]
        return {}

    monkeypatch.setattr(speed_suite, "run_measurement", fake_measurement)
    speed_suite._both_sides({"name": "train_bi", "precision": "bf16", "their_precision": "fp32"}, True, None)
    assert seen == {"ours": "bf16", "st": "fp32"}
    speed_suite._both_sides({"name": "train_bi", "precision": "bf16", "their_precision": None}, True, None)
    assert seen == {"ours": "bf16", "st": "bf16"}
    assert speed.parse_args(["--precision", "bf16", "--their-precision", "fp32"]).their_precision == "fp32"


def test_fast_reaches_our_fit_only(monkeypatch: pytest.MonkeyPatch, tiny_bert: Path) -> None:
    import speed_training

    from trans_encoder_core import distillation

    fits: list[Any] = []

    def fake_train(*args: Any, **kwargs: Any) -> Any:
        fits.append(args[4].fit)
        return SimpleNamespace(losses=[], steps=0)

    monkeypatch.setattr(distillation, "train_bi_encoder", fake_train)
    spec = {"folders": {"bi": str(tiny_bert)}, "device": "cpu", "precision": "fp32", "seed": 1}
    spec["nodrop"] = False
    for fast in (False, True):
        _, run = speed_training._ours({**spec, "fast": fast}, "train_bi", ["a b"], ["c d"], np.array([0.5]))
        run()
    assert [(f.fast_dropout, f.fused_optimizer) for f in fits] == [(False, False), (True, True)]
    assert speed.parse_args(["--fast"]).fast and not speed.parse_args([]).fast
