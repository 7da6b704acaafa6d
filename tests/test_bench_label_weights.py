"""bench/label_weights.py: weighted mixes of two PLMs' label columns against gold scores."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

_PATH = Path(__file__).resolve().parent.parent / "bench" / "label_weights.py"
_SPEC = importlib.util.spec_from_file_location("bench_label_weights", _PATH)
label_weights = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(label_weights)
sys.path.remove(str(_PATH.parent))  # the module puts bench/ on the path for its sibling import


def test_each_weight_mixes_the_two_model_columns_named_by_model() -> None:
    gold = pd.DataFrame({"sentence1": list("abcd"), "sentence2": list("wxyz"), "gold": [1, 2, 3, 4]})
    labels = gold[["sentence1", "sentence2"]].assign(
        score=0.0,
        score__beta=[0.4, 0.3, 0.2, 0.1],  # reversed ranks
        score__alpha=[0.1, 0.2, 0.3, 0.4],  # perfect ranks
    )
    models, rows = label_weights.mix_rows(labels, {"dev": gold}, [0.0, 1.0])
    assert models == ["alpha", "beta"]  # w weighs the first model by name
    assert rows[0] == {"w": 0.0, "dev": pytest.approx(-100.0)}
    assert rows[1] == {"w": 1.0, "dev": pytest.approx(100.0)}


def test_tables_of_other_than_two_models_are_refused() -> None:
    labels = pd.DataFrame({"sentence1": ["a"], "sentence2": ["b"], "score": [0.5], "score__only": [0.5]})
    with pytest.raises(ValueError, match="exactly 2 models"):
        label_weights.mix_rows(labels, {}, [0.5])
