"""Averaging several models' pseudo-labels (mutual distillation, algorithm.md §1.6)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from trans_encoder_core.ensemble import average_labels, check_model_name, label_agreement
from trans_encoder_core.schema import labels_table, validate_labels_table


def _labels(ids: list[str], scores: list[float]) -> pa.Table:
    pairs = pa.table(
        {"pair_id": ids, "sentence1": [f"a {i}" for i in ids], "sentence2": [f"b {i}" for i in ids]}
    )
    return labels_table(pairs, np.asarray(scores, dtype=np.float32))


def test_average_joins_on_pair_id_not_on_row_order() -> None:
    bert = _labels(["p1", "p2", "p3"], [0.2, 0.4, 0.9])
    roberta = _labels(["p3", "p1", "p2"], [0.7, 0.0, 0.6])
    result = average_labels({"roberta": roberta, "bert": bert})
    table = validate_labels_table(result.table, "averaged")
    assert table["pair_id"].to_pylist() == ["p1", "p2", "p3"]  # order of the first model by name
    assert table["score"].to_numpy() == pytest.approx([0.1, 0.5, 0.8])
    assert table["score__bert"].to_numpy() == pytest.approx([0.2, 0.4, 0.9])
    assert table["score__roberta"].to_numpy() == pytest.approx([0.0, 0.6, 0.7])
    assert table["sentence1"].to_pylist() == ["a p1", "a p2", "a p3"]
    m = result.metrics
    assert m["models"] == ["bert", "roberta"] and m["n"] == 3
    assert m["spread"] == pytest.approx(np.mean([0.2, 0.2, 0.2]))
    assert m["agreement"] == {"bert~roberta": pytest.approx(100.0)}
    assert m["per_model_mean"]["roberta"] == pytest.approx(13 / 30)


def test_average_is_independent_of_the_order_models_are_given() -> None:
    tables = {
        name: _labels(["x", "y", "z"], list(np.random.default_rng(i).random(3)))
        for i, name in enumerate("abc")
    }
    forward = average_labels(tables)
    backward = average_labels(dict(reversed(tables.items())))
    assert forward.table.equals(backward.table) and forward.metrics == backward.metrics
    assert set(forward.metrics["agreement"]) == {"a~b", "a~c", "b~c"}


def test_average_rejects_tables_over_different_pairs() -> None:
    with pytest.raises(ValueError, match="every model to label the same pairs"):
        average_labels({"a": _labels(["p1", "p2"], [0.1, 0.2]), "b": _labels(["p1", "p3"], [0.1, 0.2])})
    with pytest.raises(ValueError, match="at least 2 models"):
        average_labels({"a": _labels(["p1", "p2"], [0.1, 0.2])})


def test_model_names_must_be_usable_as_column_suffixes() -> None:
    assert check_model_name("roberta-s2") == "roberta-s2"
    with pytest.raises(ValueError, match="Model names expect"):
        check_model_name("bad/name")


def test_agreement_is_none_for_a_constant_model() -> None:
    assert label_agreement({"a": np.array([0.1, 0.5, 0.2]), "b": np.ones(3)}) == {"a~b": None}
