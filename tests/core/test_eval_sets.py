"""Labelled pair files as evaluation sets (trans_encoder_core.eval_sets) and per-set metrics."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trans_encoder_core.errors import ConfigError, InputDataError
from trans_encoder_core.eval_sets import (
    EvalFile,
    EvalSet,
    eval_file_digest,
    eval_sets_from_files,
    read_eval_set,
)
from trans_encoder_core.evaluation import dev_evaluator, evaluate_scorer
from trans_encoder_core.metrics import roc_auc, spearman

ROWS = [("a cat sits", "a cat is sitting", 1), ('he said "hi', "she left", 0), ("red car", "a red car", 1)]
ROWS += [("the sun", "a dog barks", 0)]


def write(
    path: Path, rows: list[tuple[object, ...]], header: tuple[str, ...] = ("sentence1", "sentence2", "label")
) -> Path:
    """Write rows in the format the suffix names (CSV quoted, TSV unquoted, JSONL, Parquet)."""
    if path.suffix == ".parquet":
        pq.write_table(pa.table({h: [r[i] for r in rows] for i, h in enumerate(header)}), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(header, r, strict=True))) + "\n" for r in rows))
    elif path.suffix == ".csv":
        import csv

        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([header, *rows])
    else:
        lines = ["\t".join(header)] + ["\t".join(str(c) for c in r) for r in rows]
        path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode("utf-8"))  # BOM, bare quotes
    return path


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".parquet"])
def test_binary_labels_read_with_roc_auc(tmp_path: Path, suffix: str) -> None:
    data = read_eval_set(str(write(tmp_path / f"dev{suffix}", ROWS)), name="mine")
    assert isinstance(data, EvalSet) and data.metric == "roc_auc" and data.name == "mine"
    assert data.sentence1 == [r[0] for r in ROWS] and data.sentence2 == [r[1] for r in ROWS]
    np.testing.assert_array_equal(data.scores, [1, 0, 1, 0])
    assert len(data.digest) == 64


def test_graded_labels_use_spearman_and_metric_is_overridable(tmp_path: Path) -> None:
    graded = [(a, b, score) for (a, b, _), score in zip(ROWS, [4.5, 0.2, 3.0, 1.0], strict=True)]
    path = write(tmp_path / "sts.jsonl", graded)
    assert read_eval_set(str(path), name="t").metric == "spearman"
    binary = write(tmp_path / "bin.csv", ROWS)
    assert read_eval_set(EvalFile(uri=str(binary), metric="spearman"), name="t").metric == "spearman"
    with pytest.raises(
        InputDataError, match=r"labels 0 or 1 for metric 'roc_auc' .* got 4.5 at line 1"
    ) as err:
        read_eval_set(EvalFile(uri=str(path), metric="roc_auc"), name="t")
    assert (err.value.row, err.value.field) == (1, "label")


def test_renamed_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "q.tsv", ROWS, header=("question", "passage", "gold"))
    spec = EvalFile(
        uri=str(path), sentence1_column="question", sentence2_column="passage", label_column="gold"
    )
    assert read_eval_set(spec, name="q").sentence2[1] == "she left"
    with pytest.raises(InputDataError, match=r"label column 'label' in .*q.tsv, got none; .*label_column="):
        read_eval_set(
            EvalFile(uri=str(path), sentence1_column="question", sentence2_column="passage"), name="q"
        )
    with pytest.raises(ConfigError, match="three different column names"):
        read_eval_set(EvalFile(uri=str(path), label_column="sentence1"), name="q")


@pytest.mark.parametrize(
    ("suffix", "bad", "found", "row"),
    [
        (".tsv", "", "a missing value", 3),
        (".csv", "yes", "the non-numeric value 'yes'", 3),
        (".jsonl", None, "a missing value", 2),
        (".parquet", None, "a missing value", 1),
        (".csv", "inf", "the non-finite value 'inf'", 3),
    ],
)
def test_bad_label_names_file_row_and_column(
    tmp_path: Path, suffix: str, bad: object, found: str, row: int
) -> None:
    rows = [ROWS[0], (*ROWS[1][:2], bad), *ROWS[2:]]
    path = write(tmp_path / f"bad{suffix}", rows)
    unit = "row" if suffix == ".parquet" else "line"
    with pytest.raises(
        InputDataError, match=rf"label column 'label' of .*bad{suffix}, got {found} at {unit} {row};"
    ) as err:
        read_eval_set(str(path), name="t")
    assert (err.value.source, err.value.row, err.value.field) == (str(path), row, "label")


def test_one_class_or_constant_labels_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "ones.csv", [(a, b, 1) for a, b, _ in ROWS])
    with pytest.raises(
        InputDataError, match=r"'dev' expects both classes 0 and 1 .* got only the label 1 in 4 rows"
    ):
        eval_sets_from_files({}, str(path))
    flat = write(tmp_path / "flat.csv", [(a, b, 2.5) for a, b, _ in ROWS])
    with pytest.raises(InputDataError, match="at least two different scores for metric 'spearman'"):
        read_eval_set(str(flat), name="t")


def test_invalid_sentence_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", [ROWS[0], ("  ", "x", 0), *ROWS[2:]])
    with pytest.raises(InputDataError, match=r"column 'sentence1' of .*s.csv, got an empty .* at line 3"):
        read_eval_set(str(path), name="t")


def test_digest_follows_bytes_and_options_not_location(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", ROWS)
    (tmp_path / "sub").mkdir()
    b = write(tmp_path / "sub" / "b.csv", ROWS)
    data = a.read_bytes()
    assert eval_file_digest(data, EvalFile(uri=str(a))) == eval_file_digest(
        b.read_bytes(), EvalFile(uri=str(b))
    )
    base = eval_file_digest(data, EvalFile(uri=str(a)))
    assert eval_file_digest(data, EvalFile(uri=str(a), metric="spearman")) != base
    assert eval_file_digest(data, EvalFile(uri=str(a), label_column="y")) != base
    assert eval_file_digest(data, EvalFile(uri="a.tsv")) != base  # another format reads other pairs
    assert eval_file_digest(data + b"x,y,1\n", EvalFile(uri=str(a))) != base
    assert read_eval_set(str(a), name="t").digest == base


def test_eval_sets_from_files_with_opener_and_names(tmp_path: Path) -> None:
    dev_path = write(tmp_path / "dev.tsv", ROWS)
    graded = write(tmp_path / "g.jsonl", [(a, b, float(i)) for i, (a, b, _) in enumerate(ROWS)])
    opened: list[str] = []

    def opener(uri: str) -> io.BytesIO:
        opened.append(uri)
        return io.BytesIO(Path(uri).read_bytes())

    dev, tests = eval_sets_from_files(
        {"mine": str(graded), "bin": EvalFile(uri=str(dev_path))}, str(dev_path), open_file=opener
    )
    assert dev is not None and dev.name == "dev" and dev.metric == "roc_auc"
    assert list(tests) == ["mine", "bin"] and tests["mine"].metric == "spearman"
    assert opened == [str(dev_path), str(graded), str(dev_path)]
    assert eval_sets_from_files({"x": str(graded)})[0] is None
    with pytest.raises(ConfigError, match="other than 'dev'"):
        eval_sets_from_files({"dev": str(graded)})
    with pytest.raises(ConfigError, match="names of letters"):
        eval_sets_from_files({"a/b": str(graded)})


def test_evaluation_follows_each_sets_metric(tmp_path: Path) -> None:
    binary = read_eval_set(str(write(tmp_path / "b.csv", ROWS)), name="b")
    graded_rows = [(a, b, s) for (a, b, _), s in zip(ROWS, [4.0, 0.5, 3.0, 2.0], strict=True)]
    graded = read_eval_set(str(write(tmp_path / "g.csv", graded_rows)), name="g")
    table = dict(zip([r[0] for r in ROWS], [0.9, 0.6, 0.4, 0.1], strict=True))

    def scorer(a, b):
        return np.array([table[s] for s in a], dtype=np.float32)

    results = evaluate_scorer(scorer, {"b": binary, "g": graded})
    pred = np.array([0.9, 0.6, 0.4, 0.1])
    assert results["b"] == pytest.approx(roc_auc(pred, [1, 0, 1, 0])) == pytest.approx(75.0)
    assert results["g"] == pytest.approx(spearman(pred, [4.0, 0.5, 3.0, 2.0]))
    assert dev_evaluator(scorer, binary)() == pytest.approx(75.0)
