"""User pair files: Parquet, CSV, TSV and JSONL into one normalised pair table (``conventions.md`` §4).

Any of them may be compressed with gzip, bzip2, xz or zstd (``pairs.csv.gz``, ``pairs.jsonl.zst``, ...):
the codec is taken from the name's last suffix or, for a stream without one, from the data's magic
bytes, and the format from the suffix before it. Every error names the file, the row or line and the
column, says what was expected and how to fix it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from trans_encoder_core.compression import COMPRESSIONS, codec_of, decompress, suffixes
from trans_encoder_core.errors import ConfigError
from trans_encoder_core.pairs import InvalidPolicy, RawRow, dedup_pairs, input_error, valid_rows

__all__ = ["PairFormat", "PairReadResult", "read_pairs"]

PairFormat = Literal["auto", "parquet", "csv", "tsv", "jsonl"]

_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".txt": "tsv"}
_EXTENSIONS |= {".jsonl": "jsonl", ".ndjson": "jsonl"}
_FORMATS = ("parquet", "csv", "tsv", "jsonl")
_UTF8_BOM = b"\xef\xbb\xbf"


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


def _read_source(source: str | os.PathLike[str] | BinaryIO, name: str | None) -> tuple[bytes, str]:
    """Return the raw bytes of ``source`` and the name to use in messages."""
    if not isinstance(source, str | os.PathLike):
        label = name or str(getattr(source, "name", "<stream>"))
        data = source.read()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise input_error(
                label, f"Pair reader expects a binary file object for {label}, got text; open it 'rb'."
            )
        return bytes(data), label
    path, label = Path(source), name or str(source)
    if not path.is_file():
        problem = "a folder" if path.is_dir() else "a path that does not exist"
        raise input_error(
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
    last, before = suffixes(name)
    suffix = before if last in COMPRESSIONS else last
    if suffix not in _EXTENSIONS:
        raise input_error(
            name,
            f"Pair reader expects a file name ending in one of {sorted(_EXTENSIONS)} to infer the format "
            f"(optionally followed by one of {sorted(COMPRESSIONS)}), got {name!r}; rename the file or "
            f"pass format= one of {_FORMATS}.",
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
        raise input_error(
            name,
            f"Pair reader expects UTF-8 text in {name}, got the invalid byte 0x{data[offset]:02x} at line "
            f"{line} (byte offset {offset}); re-save the file as UTF-8.",
            row=line,
        ) from exc


def _column_indices(header: list[str], name: str, col1: str, col2: str) -> tuple[int, int]:
    missing = [col for col in (col1, col2) if col not in header]
    if missing:
        raise input_error(
            name,
            f"Pair reader expects columns {col1!r} and {col2!r} in {name}, got columns {header} "
            f"(missing {missing}); rename the columns or pass sentence1_column=/sentence2_column= "
            "naming the columns to use.",
            field=missing[0],
        )
    return header.index(col1), header.index(col2)


def _records_to_rows(records: list[tuple[int, list[str]]], name: str, col1: str, col2: str) -> list[RawRow]:
    """Turn ``(line, fields)`` records, the first being the header, into raw rows (blank lines skipped)."""
    records = [(line, fields) for line, fields in records if len(fields) > 1 or "".join(fields).strip()]
    if not records:
        return []
    header = [cell.strip() for cell in records[0][1]]
    i1, i2 = _column_indices(header, name, col1, col2)
    for line, fields in records[1:]:
        if len(fields) != len(header):
            raise input_error(
                name,
                f"Pair reader expects {len(header)} fields per line in {name} (as in the header), got "
                f"{len(fields)} at line {line}; quote fields containing the delimiter (CSV) or remove "
                "stray tabs (TSV).",
                row=line,
            )
    return [(line, fields[i1], fields[i2]) for line, fields in records[1:]]


def _read_csv(text: str, name: str, col1: str, col2: str) -> list[RawRow]:
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
        raise input_error(
            name,
            f"Pair reader expects well-formed CSV in {name}, got '{exc}' in the record starting at line "
            f"{start}; check the quotes on that line (a quoted field must end with a closing quote).",
            row=start,
        ) from exc
    return _records_to_rows(records, name, col1, col2)


def _read_tsv(text: str, name: str, col1: str, col2: str) -> list[RawRow]:
    """Split lines and tabs ourselves: TSV text has unbalanced quotes, so quoting is disabled."""
    lines = text.split("\n")
    records = [(number, line.rstrip("\r").split("\t")) for number, line in enumerate(lines, start=1)]
    return _records_to_rows(records, name, col1, col2)


def _read_jsonl(text: str, name: str, col1: str, col2: str) -> list[RawRow]:
    rows: list[RawRow] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            found = f"a JSON {type(record).__name__}"
        except json.JSONDecodeError as exc:
            record, found = None, f"invalid JSON ({exc.msg} at column {exc.colno})"
        if not isinstance(record, dict):
            raise input_error(
                name,
                f"Pair reader expects one JSON object per line in {name}, got {found} at line {number}; "
                f'write lines like {{"{col1}": "...", "{col2}": "..."}}.',
                row=number,
            )
        if not rows:
            _column_indices(list(record), name, col1, col2)
        rows.append((number, record.get(col1), record.get(col2)))
    return rows


def _read_parquet(data: bytes, name: str, col1: str, col2: str) -> list[RawRow]:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise input_error(
            name,
            f"Pair reader expects a readable Parquet file in {name}, got: {exc}; check that the file is a "
            "complete Parquet file (not truncated) or pass the right format=.",
        ) from exc
    _column_indices(table.column_names, name, col1, col2)
    values1, values2 = table.column(col1).to_pylist(), table.column(col2).to_pylist()
    return list(zip(range(table.num_rows), values1, values2, strict=True))


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

    The file may be compressed with gzip (``.gz``), bzip2 (``.bz2``), xz (``.xz``) or zstd (``.zst``):
    the name's last suffix names the codec (a stream without one is recognised by its magic bytes)
    and the suffix before it the format, e.g. ``pairs.csv.gz``. CSV and TSV files start with a header
    row; TSV is split on tabs with quoting disabled. JSONL holds one object per line. Blank lines are
    skipped. Duplicate pairs are not an error: they are removed (first occurrence kept) and counted.
    Sentences are never truncated.

    Args:
        source: A path, or an open binary file object (e.g. from ``fsspec.open(uri, "rb")``).
        name: The name used in messages and for format inference (e.g. the URI); defaults to the
            path or the file object's ``name``.
        format: The file format; ``"auto"`` infers it from the extension of ``name``
            (``.parquet/.pq``, ``.csv``, ``.tsv/.txt``, ``.jsonl/.ndjson``), after removing a
            compression suffix. An explicit format still decompresses compressed data.
        sentence1_column: Column holding the first sentence.
        sentence2_column: Column holding the second sentence.
        on_invalid: ``"error"`` raises on the first null, missing, non-string or blank sentence;
            ``"drop"`` skips such rows and counts them in ``n_dropped``. Structural problems
            (missing columns, a wrong number of fields, bad JSON) always raise.

    Returns:
        A :class:`PairReadResult`.

    Raises:
        InputDataError: Missing, empty, undecodable or unreadable file; damaged compressed data, or a
            compression suffix the data does not match; missing columns; a header
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
    codec = codec_of(data, label) if data else None
    columns = (sentence1_column, sentence2_column)
    if codec is not None:
        data = decompress(data, codec, label)
    if not data:
        after = f" after {codec} decompression" if codec else ""
        raise input_error(
            label,
            f"Pair reader expects a non-empty file, got 0 bytes{after} in {label}; add a header and pairs.",
        )
    if fmt == "parquet":
        rows = _read_parquet(data, label, *columns)
    else:
        reader = {"csv": _read_csv, "tsv": _read_tsv, "jsonl": _read_jsonl}[fmt]
        rows = reader(_decode(data, label), label, *columns)
    if not rows:
        raise input_error(
            label,
            f"Pair reader expects at least one data row in {label}, got none (only a header, blank lines or "
            f"an empty table); add pairs with columns {sentence1_column!r}, {sentence2_column!r}.",
        )
    unit = "row" if fmt == "parquet" else "line"
    s1, s2 = valid_rows(rows, unit, label, columns, on_invalid)
    table, n_duplicates = dedup_pairs(s1, s2)
    return PairReadResult(table, len(rows), n_duplicates, len(rows) - len(s1), label)
