"""bench/label_quality.py: label tables against gold scores, matched by sentence pair."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

_PATH = Path(__file__).resolve().parent.parent / "bench" / "label_quality.py"
_SPEC = importlib.util.spec_from_file_location("bench_label_quality", _PATH)
label_quality = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(label_quality)


def test_labels_are_matched_to_gold_by_sentence_pair_and_ranked() -> None:
    gold = pd.DataFrame(
        {"sentence1": ["a", "b", "c", "d"], "sentence2": ["w", "x", "y", "z"], "gold": [1, 2, 3, 4]}
    )
    labels = pd.DataFrame(
        {
            "sentence1": ["d", "c", "b", "a", "q", "a"],
            "sentence2": ["z", "y", "x", "w", "q", "w"],  # "q" is not a gold pair, ("a", "w") twice
            "score": [0.9, 0.8, 0.1, 0.2, 0.5, 0.3],
        }
    )
    rho, n = label_quality.gold_agreement(labels, gold)
    assert n == 4  # the first copy of a repeated pair only, no pair outside the gold set
    assert rho == pytest.approx(80.0)  # ranks 2,1,3,4 against 1,2,3,4
    assert label_quality.gold_agreement(labels.assign(sentence2=labels.sentence1), gold)[1] == 0


def test_only_labelling_stages_are_read() -> None:
    names = ["ingest_pairs", "evaluate", "bi_scores", "train_cross", "average_bi_scores", "cross_scores"]
    summary = {"stages": [{"name": n, "cycle": 1, "uri": n} for n in names]}
    assert [s["name"] for s in label_quality.label_stages(summary)] == [
        "bi_scores",
        "average_bi_scores",
        "cross_scores",
    ]
