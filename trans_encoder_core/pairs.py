"""User pair files and pair identity (``algorithm.md`` §1.3, ``conventions.md`` §4).

A pair is the ordered tuple ``(sentence1, sentence2)`` after :func:`normalise_text`. Its id is a hash
of that tuple, so tables from different models and rounds join on ``pair_id``, and new pairs merge
into an existing pool without duplicates.

Pair order matters: ``(a, b)`` and ``(b, a)`` are two different pairs with two different ids. The
paper labels only the ``(s1, s2)`` order of each pair (``algorithm.md`` §1.3, "pair order when
labelling"); the cross-encoder's symmetrisation at training time happens elsewhere and does not
change pair identity.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from trans_encoder_core.errors import ConfigError, InputDataError
from trans_encoder_core.schema import PAIRS_SCHEMA

__all__ = ["PairReadResult", "make_pairs_table", "normalise_text", "pair_id", "pair_ids", "read_pairs"]

PairFormat = Literal["auto", "parquet", "csv", "tsv", "jsonl"]
InvalidPolicy = Literal["error", "drop"]

_SEPARATOR = "\x1f"  # ASCII unit separator: cannot be typed and is absent from the benchmark text.
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".txt": "tsv"}
_EXTENSIONS |= {".jsonl": "jsonl", ".ndjson": "jsonl"}
_FORMATS = ("parquet", "csv", "tsv", "jsonl")
_UTF8_BOM = b"\xef\xbb\xbf"


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
    _valid_rows(rows, "row", "<in-memory>", ("sentence1", "sentence2"), "error")
    return _dedup(sentence1, sentence2)


def _dedup(sentence1: Sequence[str], sentence2: Sequence[str]) -> tuple[pa.Table, int]:
    """Normalise valid sentences and keep the first occurrence of each pair id."""
    by_id: dict[str, tuple[str, str]] = {}
    for s1, s2 in zip(sentence1, sentence2, strict=True):
        by_id.setdefault(pair_id(s1, s2), (normalise_text(s1), normalise_text(s2)))
    columns = {"pair_id": list(by_id), "sentence1": [a for a, _ in by_id.values()]}
    columns["sentence2"] = [b for _, b in by_id.values()]
    return pa.table(columns, schema=PAIRS_SCHEMA), len(sentence1) - len(by_id)


@dataclass(frozen=True)
class PairReadResult:
    """What :func:`read_pairs` returns.

    Attributes:
        table: The unique valid pairs in ``PAIRS_SCHEMA``, in file order (first occurrence kept).
        n_rows: Data rows read from the source, before dropping invalid rows and deduplicating.
        n_duplicates: Rows removed because an earlier row had the same ``pair_id``.
        n_dropped: Invalid rows skipped under ``on_invalid="drop"`` (always 0 otherwise).
        source: The name used in messages (the path, URI or ``name`` argument).
    """

    table: pa.Table
    n_rows: int
    n_duplicates: int
    n_dropped: int
    source: str

    @property
    def n_pairs(self) -> int:
        """Number of pairs in :attr:`table` (``n_rows - n_dropped - n_duplicates``)."""
        return self.table.num_rows


# A raw row: (position, sentence1 cell, sentence2 cell). The position is the 1-based file line for
# CSV/TSV/JSONL and the 0-based row index for Parquet.
_RawRow = tuple[int, object, object]


def _fail(name: str, message: str, *, row: int | None = None, field: str | None = None) -> InputDataError:
    return InputDataError(message, source=name, row=row, field=field)


def _read_source(source: str | os.PathLike[str] | BinaryIO, name: str | None) -> tuple[bytes, str]:
    """Return the raw bytes of ``source`` and the name to use in messages."""
    if not isinstance(source, str | os.PathLike):
        label = name or str(getattr(source, "name", "<stream>"))
        data = source.read()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise _fail(
                label, f"Pair reader expects a binary file object for {label}, got text; open it 'rb'."
            )
        return bytes(data), label
    path, label = Path(source), name or str(source)
    if not path.is_file():
        problem = "a folder" if path.is_dir() else "a path that does not exist"
        raise _fail(
            label,
            f"Pair reader expects an existing file, got {problem}: '{label}'; check the path "
            f"(relative paths start at {Path.cwd()}).",
        )
    return path.read_bytes(), label


def _resolve_format(fmt: str, name: str) -> str:
    if fmt != "auto":
        if fmt not in _FORMATS:
            raise ConfigError(f"Pair reader expects format in {('auto', *_FORMATS)}, got {fmt!r}.")
        return fmt
    suffix = Path(name.split("?", 1)[0]).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise _fail(
            name,
            f"Pair reader expects a file name ending in one of {sorted(_EXTENSIONS)} to infer the format, "
            f"got {name!r}; rename the file or pass format= one of {_FORMATS}.",
        )
    return _EXTENSIONS[suffix]


def _decode(data: bytes, name: str) -> str:
    """Decode UTF-8 (an optional byte-order mark is skipped), naming the line of a bad byte."""
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise _fail(
            name,
            f"Pair reader expects UTF-8 text in {name}, got the invalid byte 0x{data[offset]:02x} at line "
            f"{line} (byte offset {offset}); re-save the file as UTF-8.",
            row=line,
        ) from exc


def _column_indices(header: list[str], name: str, col1: str, col2: str) -> tuple[int, int]:
    missing = [col for col in (col1, col2) if col not in header]
    if missing:
        raise _fail(
            name,
            f"Pair reader expects columns {col1!r} and {col2!r} in {name}, got columns {header} "
            f"(missing {missing}); rename the columns or pass sentence1_column=/sentence2_column= "
            "naming the columns to use.",
            field=missing[0],
        )
    return header.index(col1), header.index(col2)


def _records_to_rows(records: list[tuple[int, list[str]]], name: str, col1: str, col2: str) -> list[_RawRow]:
    """Turn ``(line, fields)`` records, the first being the header, into raw rows (blank lines skipped)."""
    records = [(line, fields) for line, fields in records if len(fields) > 1 or "".join(fields).strip()]
    if not records:
        return []
    header = [cell.strip() for cell in records[0][1]]
    i1, i2 = _column_indices(header, name, col1, col2)
    for line, fields in records[1:]:
        if len(fields) != len(header):
            raise _fail(
                name,
                f"Pair reader expects {len(header)} fields per line in {name} (as in the header), got "
                f"{len(fields)} at line {line}; quote fields containing the delimiter (CSV) or remove "
                "stray tabs (TSV).",
                row=line,
            )
    return [(line, fields[i1], fields[i2]) for line, fields in records[1:]]


def _read_csv(text: str, name: str, col1: str, col2: str) -> list[_RawRow]:
    if len(text) > csv.field_size_limit():
        csv.field_size_limit(len(text))  # only ever raised, so very long sentences are never cut.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for fields in reader:
            records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise _fail(
            name,
            f"Pair reader expects well-formed CSV in {name}, got '{exc}' in the record starting at line "
            f"{start}; check the quotes on that line (a quoted field must end with a closing quote).",
            row=start,
        ) from exc
    return _records_to_rows(records, name, col1, col2)


def _read_tsv(text: str, name: str, col1: str, col2: str) -> list[_RawRow]:
    """Split lines and tabs ourselves: TSV text has unbalanced quotes, so quoting is disabled."""
    lines = text.split("\n")
    records = [(number, line.rstrip("\r").split("\t")) for number, line in enumerate(lines, start=1)]
    return _records_to_rows(records, name, col1, col2)


def _read_jsonl(text: str, name: str, col1: str, col2: str) -> list[_RawRow]:
    rows: list[_RawRow] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            found = f"a JSON {type(record).__name__}"
        except json.JSONDecodeError as exc:
            record, found = None, f"invalid JSON ({exc.msg} at column {exc.colno})"
        if not isinstance(record, dict):
            raise _fail(
                name,
                f"Pair reader expects one JSON object per line in {name}, got {found} at line {number}; "
                f'write lines like {{"{col1}": "...", "{col2}": "..."}}.',
                row=number,
            )
        if not rows:
            _column_indices(list(record), name, col1, col2)
        rows.append((number, record.get(col1), record.get(col2)))
    return rows


def _read_parquet(data: bytes, name: str, col1: str, col2: str) -> list[_RawRow]:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise _fail(
            name,
            f"Pair reader expects a readable Parquet file in {name}, got: {exc}; check that the file is a "
            "complete Parquet file (not truncated) or pass the right format=.",
        ) from exc
    _column_indices(table.column_names, name, col1, col2)
    values1, values2 = table.column(col1).to_pylist(), table.column(col2).to_pylist()
    return list(zip(range(table.num_rows), values1, values2, strict=True))


def _valid_rows(
    rows: list[_RawRow], unit: str, name: str, columns: tuple[str, str], on_invalid: InvalidPolicy
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
            raise _fail(
                name,
                f"Pair data expects a non-empty string in column {col!r} of {name}, got {reason} at {unit} "
                f"{position}; fix or remove that row (read_pairs: on_invalid='drop' skips such rows).",
                row=position,
                field=col,
            )
    if not kept1:
        raise _fail(
            name, f"Pair reader expects at least one valid pair in {name}, got {len(rows)} invalid rows."
        )
    return kept1, kept2


def read_pairs(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    name: str | None = None,
    format: PairFormat = "auto",
    sentence1_column: str = "sentence1",
    sentence2_column: str = "sentence2",
    on_invalid: InvalidPolicy = "error",
) -> PairReadResult:
    """Read a user pair file (Parquet, CSV, TSV or JSONL) into a deduplicated pair table.

    CSV and TSV files start with a header row; TSV is split on tabs with quoting disabled. JSONL
    holds one object per line. Blank lines are skipped. Duplicate pairs are not an error: they are
    removed (first occurrence kept) and counted. Sentences are never truncated.

    Args:
        source: A path, or an open binary file object (e.g. from ``fsspec.open(uri, "rb")``).
        name: The name used in messages and for format inference (e.g. the URI); defaults to the
            path or the file object's ``name``.
        format: The file format; ``"auto"`` infers it from the extension of ``name``
            (``.parquet/.pq``, ``.csv``, ``.tsv/.txt``, ``.jsonl/.ndjson``).
        sentence1_column: Column holding the first sentence.
        sentence2_column: Column holding the second sentence.
        on_invalid: ``"error"`` raises on the first null, missing, non-string or blank sentence;
            ``"drop"`` skips such rows and counts them in ``n_dropped``. Structural problems
            (missing columns, a wrong number of fields, bad JSON) always raise.

    Returns:
        A :class:`PairReadResult`.

    Raises:
        InputDataError: Missing, empty, undecodable or unreadable file; missing columns; a header
            without rows; malformed rows; invalid sentences under ``on_invalid="error"``. Row
            numbers are 1-based file lines (header = line 1) for CSV/TSV/JSONL and 0-based row
            indices for Parquet ("row N").
        ConfigError: Invalid ``format``/``on_invalid`` values or identical column names.
    """
    if on_invalid not in ("error", "drop") or sentence1_column == sentence2_column:
        raise ConfigError(
            "Pair reader expects on_invalid in ('error', 'drop') and two different sentence columns, got "
            f"on_invalid={on_invalid!r}, columns {sentence1_column!r} and {sentence2_column!r}."
        )
    data, label = _read_source(source, name)
    fmt = _resolve_format(format, label)
    columns = (sentence1_column, sentence2_column)
    if not data:
        raise _fail(
            label, f"Pair reader expects a non-empty file, got 0 bytes in {label}; add a header and pairs."
        )
    if fmt == "parquet":
        rows = _read_parquet(data, label, *columns)
    else:
        reader = {"csv": _read_csv, "tsv": _read_tsv, "jsonl": _read_jsonl}[fmt]
        rows = reader(_decode(data, label), label, *columns)
    if not rows:
        raise _fail(
            label,
            f"Pair reader expects at least one data row in {label}, got none (only a header, blank lines or "
            f"an empty table); add pairs with columns {sentence1_column!r}, {sentence2_column!r}.",
        )
    unit = "row" if fmt == "parquet" else "line"
    s1, s2 = _valid_rows(rows, unit, label, columns, on_invalid)
    table, n_duplicates = _dedup(s1, s2)
    return PairReadResult(table, len(rows), n_duplicates, len(rows) - len(s1), label)
