"""Pair identity, validation and deduplication (``algorithm.md`` §1.3, ``conventions.md`` §4).

Reading user files lives in :mod:`trans_encoder_core.pair_files`.

A pair is the ordered tuple ``(sentence1, sentence2)`` after :func:`normalise_text`. Its id is a hash
of that tuple, so tables from different models and rounds join on ``pair_id``, and new pairs merge
into an existing pool without duplicates.

Pair order matters: ``(a, b)`` and ``(b, a)`` are two different pairs with two different ids. The
paper labels only the ``(s1, s2)`` order of each pair (``algorithm.md`` §1.3, "pair order when
labelling"); the cross-encoder's symmetrisation at training time happens elsewhere and does not
change pair identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import pyarrow as pa

from trans_encoder_core.errors import InputDataError
from trans_encoder_core.schema import PAIRS_SCHEMA

__all__ = [
    "dedup_pairs",
    "make_pairs_table",
    "merge_pair_tables",
    "normalise_text",
    "pair_id",
    "pair_ids",
    "valid_rows",
]

InvalidPolicy = Literal["error", "drop"]

_SEPARATOR = "\x1f"  # ASCII unit separator: cannot be typed and is absent from the benchmark text.


def normalise_text(s: str) -> str:
    """Return ``s`` without surrounding whitespace; the inner text (case, spacing) is kept as is."""
    return s.strip()


def pair_id(s1: str, s2: str) -> str:
    """Return the stable id of the ordered pair ``(s1, s2)``.

    The id is the first 16 hex characters (64 bits) of the SHA-256 of
    ``normalise_text(s1) + "\\x1f" + normalise_text(s2)`` encoded as UTF-8. It is order-sensitive:
    ``pair_id(a, b) != pair_id(b, a)`` (see the module docstring). Unlike the official code's
    ``s1 + s2`` key (``algorithm.md`` §6.1 item 10), ``("ab", "c")`` and ``("a", "bc")`` differ.
    """
    key = normalise_text(s1) + _SEPARATOR + normalise_text(s2)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def pair_ids(s1_list: Sequence[str], s2_list: Sequence[str]) -> list[str]:
    """Return :func:`pair_id` for each position of two equally long sequences of sentences."""
    if len(s1_list) != len(s2_list):
        raise InputDataError(
            f"pair_ids expects two sequences of equal length, got {len(s1_list)} and {len(s2_list)}; "
            "pass one sentence2 per sentence1."
        )
    return [pair_id(a, b) for a, b in zip(s1_list, s2_list, strict=True)]


def _invalid_reason(value: object) -> str | None:
    """Describe why ``value`` is not a usable sentence, or return None when it is."""
    if value is None:
        return "a null/missing value"
    if not isinstance(value, str):
        return f"a value of type {type(value).__name__} ({value!r:.40})"
    if not value.strip():
        return "an empty or whitespace-only string"
    return None


def make_pairs_table(sentence1: Sequence[str], sentence2: Sequence[str]) -> tuple[pa.Table, int]:
    """Build a deduplicated pair table in ``PAIRS_SCHEMA`` from two aligned lists of sentences.

    Text is normalised with :func:`normalise_text`; rows with the same :func:`pair_id` are
    deduplicated, keeping the first occurrence (and its position in the order).

    Returns:
        ``(table, n_duplicates_removed)``.

    Raises:
        InputDataError: On different lengths, or a non-string or empty sentence (0-based row).
    """
    if len(sentence1) != len(sentence2):
        raise InputDataError(
            f"make_pairs_table expects two sequences of equal length, got {len(sentence1)} and "
            f"{len(sentence2)}; pass one sentence2 per sentence1."
        )
    rows = [(row, s1, s2) for row, (s1, s2) in enumerate(zip(sentence1, sentence2, strict=True))]
    valid_rows(rows, "row", "<in-memory>", ("sentence1", "sentence2"), "error")
    return dedup_pairs(sentence1, sentence2)


def dedup_pairs(sentence1: Sequence[str], sentence2: Sequence[str]) -> tuple[pa.Table, int]:
    """Normalise valid sentences and keep the first occurrence of each pair id."""
    by_id: dict[str, tuple[str, str]] = {}
    for s1, s2 in zip(sentence1, sentence2, strict=True):
        by_id.setdefault(pair_id(s1, s2), (normalise_text(s1), normalise_text(s2)))
    columns = {"pair_id": list(by_id), "sentence1": [a for a, _ in by_id.values()]}
    columns["sentence2"] = [b for _, b in by_id.values()]
    return pa.table(columns, schema=PAIRS_SCHEMA), len(sentence1) - len(by_id)


def merge_pair_tables(tables: Sequence[pa.Table]) -> tuple[pa.Table, int]:
    """Concatenate pair tables in order and keep the first occurrence of each pair (`dedup_pairs`).

    Used to grow a pool: rows of earlier tables (pairs already trained on) keep their place.

    Returns:
        `(table, n_duplicates_removed)`.
    """
    if not tables:
        raise InputDataError(
            "Merging pools expects a previous pool, initial pairs or inbox files, got none; add pairs with "
            "`trans-encoder add-pairs FILE` or set initial_pairs."
        )
    first = [s for t in tables for s in t["sentence1"].to_pylist()]
    second = [s for t in tables for s in t["sentence2"].to_pylist()]
    return dedup_pairs(first, second)


# A raw row: (position, sentence1 cell, sentence2 cell). The position is the 1-based file line for
# CSV/TSV/JSONL and the 0-based row index for Parquet.
RawRow = tuple[int, object, object]


def input_error(
    name: str, message: str, *, row: int | None = None, field: str | None = None
) -> InputDataError:
    return InputDataError(message, source=name, row=row, field=field)


def valid_rows(
    rows: list[RawRow], unit: str, name: str, columns: tuple[str, str], on_invalid: InvalidPolicy
) -> tuple[list[str], list[str]]:
    """Apply the ``on_invalid`` policy to raw rows; return the valid sentences."""
    kept1: list[str] = []
    kept2: list[str] = []
    for position, s1, s2 in rows:
        problems = [
            (col, reason) for col, value in zip(columns, (s1, s2)) if (reason := _invalid_reason(value))
        ]
        if not problems:
            kept1.append(s1)  # type: ignore[arg-type]
            kept2.append(s2)  # type: ignore[arg-type]
        elif on_invalid == "error":
            col, reason = problems[0]
            raise input_error(
                name,
                f"Pair data expects a non-empty string in column {col!r} of {name}, got {reason} at {unit} "
                f"{position}; fix or remove that row (read_pairs: on_invalid='drop' skips such rows).",
                row=position,
                field=col,
            )
    if not kept1:
        raise input_error(
            name, f"Pair reader expects at least one valid pair in {name}, got {len(rows)} invalid rows."
        )
    return kept1, kept2
