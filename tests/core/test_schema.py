"""Tests for the Parquet contracts (trans_encoder_core.schema)."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trans_encoder_core.errors import InputDataError
from trans_encoder_core.pairs import make_pairs_table
from trans_encoder_core.schema import (
    LABELS_SCHEMA,
    LINEAGE_KEY,
    PAIRS_SCHEMA,
    labels_table,
    read_lineage,
    validate_labels_table,
    validate_pairs_table,
    with_lineage,
)


@pytest.fixture
def pairs() -> pa.Table:
    table, _ = make_pairs_table(["a b", "c d", "e f"], ["x", "y", "z"])
    return table


def _raw(**columns: list) -> pa.Table:
    base = {"pair_id": ["p1", "p2", "p3"], "sentence1": ["a", "b", "c"], "sentence2": ["d", "e", "f"]}
    base.update(columns)
    return pa.table(base)


def test_validate_pairs_returns_exact_schema_and_drops_extras() -> None:
    table = _raw(extra=[1, 2, 3]).cast(
        pa.schema(
            [
                ("pair_id", pa.large_string()),
                ("sentence1", pa.string()),
                ("sentence2", pa.string()),
                ("extra", pa.int64()),
            ]
        )
    )
    result = validate_pairs_table(table, "mem://t.parquet")
    assert result.schema.equals(PAIRS_SCHEMA)
    assert result.column("pair_id").to_pylist() == ["p1", "p2", "p3"]


def test_validate_pairs_accepts_dictionary_text() -> None:
    table = _raw()
    table = table.set_column(1, "sentence1", table.column("sentence1").dictionary_encode())
    assert validate_pairs_table(table, "t").schema.equals(PAIRS_SCHEMA)


def test_validate_pairs_missing_column_names_source_and_columns() -> None:
    with pytest.raises(
        InputDataError, match=r"expects columns .*got \['pair_id', 'sentence1'\] in f\.parquet"
    ) as e:
        validate_pairs_table(_raw().drop_columns(["sentence2"]), "f.parquet")
    assert e.value.field == "sentence2" and e.value.source == "f.parquet"


def test_validate_pairs_wrong_type() -> None:
    with pytest.raises(
        InputDataError, match=r"column 'sentence1' of f\.parquet to be a string column, got type int64"
    ):
        validate_pairs_table(_raw(sentence1=[1, 2, 3]), "f.parquet")


def test_validate_pairs_null_names_row_and_column() -> None:
    with pytest.raises(
        InputDataError, match=r"missing values in column 'sentence2' of f.parquet, got a null at row 1"
    ) as e:
        validate_pairs_table(_raw(sentence2=["d", None, "f"]), "f.parquet")
    assert (e.value.row, e.value.field) == (1, "sentence2")


def test_validate_pairs_blank_text() -> None:
    with pytest.raises(InputDataError, match=r"non-empty text in column 'sentence1' .* at row 2"):
        validate_pairs_table(_raw(sentence1=["a", "b", "  "]), "f.parquet")


def test_validate_pairs_duplicate_id() -> None:
    with pytest.raises(
        InputDataError, match=r"unique pair_id values in f.parquet, got 'p1' at rows 0 and 2"
    ) as e:
        validate_pairs_table(_raw(pair_id=["p1", "p2", "p1"]), "f.parquet")
    assert e.value.row == 2


def test_labels_table_aligns_and_casts(pairs: pa.Table) -> None:
    table = labels_table(pairs, np.array([0.1, 0.5, 0.9]), extra={"score__bert": np.array([1.0, 2.0, 3.0])})
    assert table.schema.names == [*LABELS_SCHEMA.names, "score__bert"]
    assert table.schema.field("score").type == pa.float32()
    assert table.schema.field("score__bert").type == pa.float32()
    assert table.column("pair_id").to_pylist() == pairs.column("pair_id").to_pylist()
    np.testing.assert_allclose(table.column("score").to_numpy(), [0.1, 0.5, 0.9], rtol=1e-6)


def test_labels_table_length_mismatch(pairs: pa.Table) -> None:
    with pytest.raises(InputDataError, match=r"one value per pair \(3\), got shape \(2,\)"):
        labels_table(pairs, np.array([0.1, 0.2]))
    with pytest.raises(InputDataError, match=r"'score__x' as a 1-D array"):
        labels_table(pairs, np.zeros(3), extra={"score__x": np.zeros((3, 2))})


def test_labels_table_rejects_nan_and_name_clash(pairs: pa.Table) -> None:
    with pytest.raises(InputDataError, match=r"finite values in column 'score' .* got nan at row 1"):
        labels_table(pairs, np.array([0.1, np.nan, 0.3]))
    with pytest.raises(InputDataError, match=r"rename it"):
        labels_table(pairs, np.zeros(3), extra={"sentence1": np.zeros(3)})


def test_validate_labels_casts_float64_and_rejects_overflow(pairs: pa.Table) -> None:
    table = pairs.append_column("score", pa.array([0.25, 0.5, 0.75], pa.float64()))
    assert validate_labels_table(table, "l.parquet").schema.field("score").type == pa.float32()
    big = pairs.append_column("score", pa.array([0.25, 1e300, 0.75], pa.float64()))
    with pytest.raises(
        InputDataError, match=r"finite values in column 'score' of l.parquet, got inf at row 1"
    ):
        validate_labels_table(big, "l.parquet")


def test_validate_labels_missing_score_and_bad_extra(pairs: pa.Table) -> None:
    with pytest.raises(InputDataError, match=r"Labels table expects columns .*missing \['score'\]"):
        validate_labels_table(pairs, "l.parquet")
    bad = pairs.append_column("score", pa.array([0.1, 0.2, 0.3])).append_column(
        "note", pa.array(["a", "b", "c"])
    )
    with pytest.raises(InputDataError, match=r"column 'note' of l.parquet to be float32, got type string"):
        validate_labels_table(bad, "l.parquet")


def test_lineage_round_trip_through_parquet(tmp_path, pairs: pa.Table) -> None:
    lineage = {"stage": "label_bi", "cycle": 1, "inputs": ["a.parquet"]}
    table = with_lineage(labels_table(pairs, np.zeros(3)), lineage)
    path = tmp_path / "labels.parquet"
    pq.write_table(table, path)
    assert read_lineage(pq.read_schema(path)) == lineage
    assert read_lineage(validate_labels_table(pq.read_table(path), str(path))) == lineage
    assert read_lineage(pairs) == {}
    assert LINEAGE_KEY in table.schema.metadata


def test_with_lineage_replaces_and_keeps_other_metadata(pairs: pa.Table) -> None:
    table = pairs.replace_schema_metadata({b"other": b"1"})
    table = with_lineage(with_lineage(table, {"a": 1}), {"b": 2})
    assert read_lineage(table) == {"b": 2}
    assert table.schema.metadata[b"other"] == b"1"


def test_with_lineage_rejects_non_json(pairs: pa.Table) -> None:
    with pytest.raises(TypeError, match="JSON-serialisable"):
        with_lineage(pairs, {"x": object()})


def test_input_data_error_pickles_with_attributes() -> None:
    error = InputDataError("bad", source="f.csv", row=3, field="sentence1")
    clone = pickle.loads(pickle.dumps(error))
    assert (str(clone), clone.source, clone.row, clone.field) == ("bad", "f.csv", 3, "sentence1")
    assert isinstance(clone, ValueError)
