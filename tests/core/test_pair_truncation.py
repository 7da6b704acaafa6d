"""Longest-first truncation of sentence pairs keeps the split that stored stages were computed with.

Labels and evaluations of a cross-encoder depend on which tokens of a too-long pair survive, and a
stage key names the model, config and data, not the tokenizer library's version. tokenizers 0.23.3
changed the split of some long pairs (the odd token moved to the other sentence), which changed
the evaluation bytes pinned by tests/flows/test_golden_keys.py; pyproject.toml pins tokenizers below
it. These cases fail at once, naming the cause, when an installed tokenizers splits differently.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tokenizers
from transformers import AutoTokenizer

from trans_encoder_core.batching import tokenize_pairs

GOLDEN_BERT = Path(__file__).resolve().parents[1] / "flows" / "golden" / "models" / "bert"


@pytest.mark.parametrize(
    ("max_length", "n1", "n2", "kept"),
    [
        (14, 16, 14, (5, 6)),  # tokenizers 0.23.3 keeps (6, 5)
        (16, 18, 16, (6, 7)),  # 0.23.3: (7, 6)
        (16, 16, 14, (7, 6)),
        (14, 28, 28, (5, 6)),
        (13, 9, 3, (7, 3)),  # one short sentence keeps all its tokens
        (20, 5, 6, (5, 6)),  # within the limit: nothing cut
    ],
)
def test_long_pairs_keep_the_recorded_split(max_length: int, n1: int, n2: int, kept: tuple[int, int]) -> None:
    tok = AutoTokenizer.from_pretrained(GOLDEN_BERT)
    first, second = " ".join(["the"] * n1), " ".join(["a"] * n2)
    assert [len(tok(s, add_special_tokens=False)["input_ids"]) for s in (first, second)] == [n1, n2]
    ids = list(tokenize_pairs(tok, [first], [second], max_length).input_ids[0])
    sep = ids.index(tok.sep_token_id)
    got = (sep - 1, len(ids) - sep - 2)  # [CLS] first [SEP] second [SEP]
    assert got == kept, (
        f"tokenizers {tokenizers.__version__} splits a {n1}+{n2}-token pair at {max_length} tokens as "
        f"{got}, not {kept} as the stored stages were computed; see the tokenizers pin in pyproject.toml"
    )
