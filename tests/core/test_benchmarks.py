"""Tests for the benchmark loaders and the training pool (trans_encoder_core.benchmarks).

Tests marked by the ``data_root`` fixture read the real STS files (``$TRANS_ENCODER_DATA`` or
``../shared/data/sts``) and skip when they are absent. SICK-R is not in the shared data, so its
tests write small fixture files in both documented formats.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from trans_encoder_core.benchmarks import (
    DATA_ENV_VAR,
    MANIFEST,
    TASKS,
    LabelledPairs,
    available_tasks,
    load_sickr,
    load_sts_year,
    load_stsb,
    load_task,
    resolve_data_root,
)
from trans_encoder_core.errors import BenchmarkDataError, ConfigError
from trans_encoder_core.pool import training_pool
from trans_encoder_core.schema import PAIRS_SCHEMA, validate_pairs_table

STS_COUNTS = {
    2012: (3108, 3108),
    2013: (1500, 1500),
    2014: (3750, 3750),
    2015: (8500, 3000),
    2016: (9183, 1186),
}
# Measured on the checksummed files of ../shared/data/sts (see the data README's SHA256SUMS).
POOL_TRANSDUCTIVE_STS_STSB = 27233
POOL_INDUCTIVE_STSB = 7198

SICK_ROWS = {  # split -> (sentence_A, sentence_B, score)
    "train": [("A dog runs.", "A dog is running.", "4.8"), ("A man cooks.", "A woman sings.", "1.2")],
    "trial": [("Kids play.", "Children are playing.", "4.5")],
    "test": [("A cat sleeps.", "A cat is asleep.", "4.9"), ("A dog runs.", "A dog is running.", "4.8")],
}


def _write_sick_annotated(folder: Path) -> Path:
    header = [
        "pair_ID",
        "pair_type",
        "sentence_A",
        "sentence_B",
        "relatedness_score",
        "entailment_label",
        "x1",
        "x2",
        "SemEval_set",
    ]
    lines = ["\t".join(header)]
    for split, rows in SICK_ROWS.items():
        for n, (a, b, score) in enumerate(rows):
            lines.append("\t".join([str(n), "t", a, b, score, "NEUTRAL", "", "", split.upper()]))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "SICK_annotated.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_sick_semeval(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = {"train": "SICK_train.txt", "trial": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
    for split, rows in SICK_ROWS.items():
        eol = "\r\n" if split == "test" else "\n"
        lines = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
        lines += [f"{n}\t{a}\t{b}\t{score}\tNEUTRAL" for n, (a, b, score) in enumerate(rows)]
        (folder / names[split]).write_bytes((eol.join(lines) + eol).encode("utf-8"))


# --- real data --------------------------------------------------------------------------------


@pytest.mark.parametrize("year", sorted(STS_COUNTS))
def test_sts_year_counts(data_root: Path, year: int) -> None:
    data = load_sts_year(data_root, year)
    assert (len(data), len(data.scored())) == STS_COUNTS[year]
    assert data.name == f"sts{year % 100}" and data.scores.dtype == np.float64
    scored = data.scored().scores
    assert scored.min() >= 0 and scored.max() <= 5
    assert not any("\t" in s for s in data.sentence1 + data.sentence2)  # STS16: first two columns only


def test_stsb_splits(data_root: Path) -> None:
    for split, expected in {"train": 5749, "dev": 1500, "test": 1379}.items():
        data = load_stsb(data_root, split)
        assert len(data) == expected and data.name == f"stsb-{split}"
        assert np.isfinite(data.scores).all() and data.scores.min() >= 0 and data.scores.max() <= 5
        assert not any("\t" in s for s in data.sentence2)  # trailing licence columns ignored


def test_load_task_returns_scored_test_sets(data_root: Path) -> None:
    expected = {"sts12": 3108, "sts13": 1500, "sts14": 3750, "sts15": 3000, "sts16": 1186, "stsb": 1379}
    for task, count in expected.items():
        data = load_task(data_root, task)
        assert (data.name, len(data)) == (task, count)
        assert not np.isnan(data.scores).any()


def test_available_tasks_on_shared_data(data_root: Path) -> None:
    status = available_tasks(data_root)
    assert list(status) == list(TASKS)
    assert all(status[task] is None for task in TASKS[:6])
    if not (data_root / "sickr").exists():
        assert "not found" in (status["sickr"] or "")


def test_training_pool_transductive(data_root: Path) -> None:
    table, stats = training_pool(data_root, tasks=TASKS[:6])
    assert validate_pairs_table(table, "pool").schema.equals(PAIRS_SCHEMA)
    assert stats["n_input"] == 26041 + 5749 + 1500 + 1379
    assert stats["n_unscored"] == 26041 - 12544
    assert stats["n_pairs"] == table.num_rows == POOL_TRANSDUCTIVE_STS_STSB
    assert stats["n_duplicates"] == stats["n_input"] - stats["n_pairs"]
    assert stats["sources"]["sts16"] == 9183 and stats["missing"] == []


def test_training_pool_inductive_excludes_test_sets(data_root: Path) -> None:
    table, stats = training_pool(data_root, mode="inductive", tasks=TASKS[:6])
    assert stats["sources"] == {"stsb-train": 5749, "stsb-dev": 1500}
    assert table.num_rows == POOL_INDUCTIVE_STSB
    assert stats["excluded"] == ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb-test"]
    test_ids = set(training_pool(data_root, tasks=["stsb"])[0].column("pair_id").to_pylist())
    assert len(test_ids) > table.num_rows


def test_training_pool_reports_missing_tasks(data_root: Path) -> None:
    if (data_root / "sickr").exists():
        pytest.skip("the data folder has SICK-R")
    _, stats = training_pool(data_root)
    assert stats["missing"] == ["sickr"] and "not found" in stats["missing_reasons"]["sickr"]


def test_truncated_sts_file_is_named(data_root: Path, tmp_path: Path) -> None:
    shutil.copytree(data_root / "sts13", tmp_path / "sts13")
    target = tmp_path / "sts13" / "STS.input.OnWN.txt"
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    target.write_text("".join(lines[:500]), encoding="utf-8")
    with pytest.raises(
        BenchmarkDataError, match=rf"expects 561 pairs in .*STS\.input\.OnWN\.txt, got 500; .*{DATA_ENV_VAR}"
    ) as e:
        load_sts_year(tmp_path, 2013)
    assert (e.value.expected, e.value.found) == (561, 500) and e.value.path == str(target)
    with pytest.raises(
        BenchmarkDataError, match=r"expects 500 lines \(one per input pair\) in .*STS\.gs\.OnWN\.txt, got 561"
    ):
        load_sts_year(tmp_path, 2013, check_counts=False)  # still misaligned with its gs file
    (tmp_path / "sts13" / "STS.gs.OnWN.txt").unlink()
    with pytest.raises(
        BenchmarkDataError, match=r"expects the file .*STS\.gs\.OnWN\.txt, got no such file; .*data/README"
    ):
        load_sts_year(tmp_path, 2013)
    assert "STS.gs.OnWN.txt" in (available_tasks(tmp_path)["sts13"] or "")


def test_truncated_stsb_and_bad_score(data_root: Path, tmp_path: Path) -> None:
    (tmp_path / "stsb").mkdir()
    lines = (data_root / "stsb" / "sts-dev.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "stsb" / "sts-dev.csv").write_text("".join(lines[:100]), encoding="utf-8")
    with pytest.raises(BenchmarkDataError, match=r"expects 1500 pairs in .*sts-dev\.csv, got 100"):
        load_stsb(tmp_path, "dev")
    assert len(load_stsb(tmp_path, "dev", check_counts=False)) == 100
    (tmp_path / "stsb" / "sts-dev.csv").write_text("a\tb\tc\td\tfive\ts1\ts2\n", encoding="utf-8")
    with pytest.raises(
        BenchmarkDataError, match=r"number or nothing at line 1 of .*sts-dev\.csv, got 'five'"
    ):
        load_stsb(tmp_path, "dev", check_counts=False)
    (tmp_path / "stsb" / "sts-dev.csv").write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(
        BenchmarkDataError, match=r"at least 7 tab-separated fields at line 1 of .*sts-dev\.csv, got 3"
    ):
        load_stsb(tmp_path, "dev", check_counts=False)


# --- SICK-R fixtures --------------------------------------------------------------------------


@pytest.mark.parametrize("writer", [_write_sick_annotated, _write_sick_semeval])
def test_sickr_both_formats(tmp_path: Path, writer) -> None:
    writer(tmp_path / "sickr")
    for split, rows in SICK_ROWS.items():
        data = load_sickr(tmp_path, split, check_counts=False)
        assert data.name == f"sickr-{split}"
        assert data.sentence1 == [a for a, _, _ in rows] and data.sentence2 == [b for _, b, _ in rows]
        np.testing.assert_allclose(data.scores, [float(s) for _, _, s in rows])
    assert available_tasks(tmp_path)["sickr"] is None
    assert len(load_task(tmp_path, "sickr", check_counts=False)) == 2


def test_sickr_counts_are_checked(tmp_path: Path) -> None:
    _write_sick_semeval(tmp_path / "sickr")
    with pytest.raises(
        BenchmarkDataError, match=r"expects 4927 test pairs in .*SICK_test_annotated\.txt, got 2"
    ):
        load_sickr(tmp_path, "test")
    _write_sick_annotated(tmp_path / "sickr")  # preferred once present
    with pytest.raises(BenchmarkDataError, match=r"expects 4906 test pairs in .*SICK_annotated\.txt, got 2"):
        load_sickr(tmp_path, "test")


def test_sickr_missing_files_and_columns(tmp_path: Path) -> None:
    (tmp_path / "sickr").mkdir()
    with pytest.raises(
        BenchmarkDataError, match=r"SICK_annotated\.txt or .*SICK_trial\.txt for SICK-R trial, got neither"
    ):
        load_sickr(tmp_path, "trial")
    assert "missing 3 file(s)" in (available_tasks(tmp_path)["sickr"] or "")
    (tmp_path / "sickr" / "SICK_annotated.txt").write_text(
        "pair_ID\tsentence_A\tscore\n1\ta\t3\n", encoding="utf-8"
    )
    with pytest.raises(
        BenchmarkDataError, match=r"header with columns .*'sentence_B'.* in .*SICK_annotated\.txt, got"
    ):
        load_sickr(tmp_path, "train", check_counts=False)


def test_training_pool_on_sick_fixture_dedups_and_lists_missing(tmp_path: Path) -> None:
    _write_sick_semeval(tmp_path / "sickr")
    table, stats = training_pool(tmp_path, check_counts=False)
    assert stats["missing"] == ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb"]
    assert "not found" in stats["missing_reasons"]["stsb"]
    assert stats["sources"] == {"sickr-train": 2, "sickr-trial": 1, "sickr-test": 2}
    assert (stats["n_input"], stats["n_duplicates"], table.num_rows) == (5, 1, 4)
    _, inductive = training_pool(tmp_path, mode="inductive", check_counts=False)
    assert inductive["n_pairs"] == 3 and inductive["excluded"] == ["sickr-test"]


def test_training_pool_with_nothing_available(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkDataError, match=r"at least one pair from tasks .* got none"):
        training_pool(tmp_path)


# --- arguments and helpers --------------------------------------------------------------------


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"year in 2012–2016, got 2011"):
        load_sts_year(tmp_path, 2011)
    with pytest.raises(ConfigError, match=r"task in .* got 'sts17'"):
        load_task(tmp_path, "sts17")
    with pytest.raises(ConfigError, match=r"mode 'transductive' or 'inductive', got 'both'"):
        training_pool(tmp_path, mode="both")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"split in .* got 'validation'"):
        load_stsb(tmp_path, "validation")  # type: ignore[arg-type]


def test_resolve_data_root(tmp_path: Path) -> None:
    assert resolve_data_root(str(tmp_path), {DATA_ENV_VAR: "/elsewhere"}) == tmp_path
    assert resolve_data_root(None, {DATA_ENV_VAR: "/data/sts"}) == Path("/data/sts")
    assert resolve_data_root(None, {DATA_ENV_VAR: "  "}) is None
    assert resolve_data_root(None, {}) is None
    assert resolve_data_root("~/sts", {}) == Path.home() / "sts"


def test_labelled_pairs() -> None:
    data = LabelledPairs("x", ["a", "b", "c"], ["d", "e", "f"], np.array([1.0, np.nan, 3.0]))
    assert len(data) == 3 and data.scored().sentence1 == ["a", "c"] and len(data.scored()) == 2
    with pytest.raises(ValueError, match=r"equal lengths, got 2 sentence1, 3 sentence2 and 3 scores"):
        LabelledPairs("x", ["a", "b"], ["d", "e", "f"], np.zeros(3))


def test_manifest_matches_readme_totals() -> None:
    totals = {task: sum(total for total, _ in MANIFEST[task].values()) for task in TASKS[:5]}
    assert totals == {"sts12": 3108, "sts13": 1500, "sts14": 3750, "sts15": 8500, "sts16": 9183}
    assert sum(scored for task in TASKS[:5] for _, scored in MANIFEST[task].values()) == 12544
