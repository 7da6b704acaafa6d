"""The Parquet contracts for pair and pseudo-label tables, defined once (``conventions.md`` §4).

* ``PAIRS_SCHEMA``: the unlabeled pair pool (``algorithm.md`` §1.3), one row per unique pair, keyed by
  ``pair_id`` (see :func:`trans_encoder_core.pairs.pair_id`).
* ``LABELS_SCHEMA``: the same columns plus the pseudo-label ``score`` (float32) that one model
  assigns in one round. Extra float32 columns are allowed (e.g. ``score__<model>`` when the mutual
  distillation averages several models, ``algorithm.md`` §1.6).

Lineage (which stage, config and inputs produced a table) travels inside the Parquet file as JSON
under the schema metadata key ``b"trans_encoder.lineage"``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trans_encoder_core.errors import InputDataError

__all__ = [
    "LABELS_SCHEMA",
    "LINEAGE_KEY",
    "PAIRS_SCHEMA",
    "labels_table",
    "read_lineage",
    "validate_labels_table",
    "validate_pairs_table",
    "with_lineage",
]

LINEAGE_KEY = b"trans_encoder.lineage"

PAIRS_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("sentence1", pa.string(), nullable=False),
        pa.field("sentence2", pa.string(), nullable=False),
    ]
)

LABELS_SCHEMA = pa.schema([*PAIRS_SCHEMA, pa.field("score", pa.float32(), nullable=False)])

_TEXT_COLUMNS = ("sentence1", "sentence2")


def _fail(source: str, message: str, *, row: int | None = None, field: str | None = None) -> InputDataError:
    return InputDataError(message, source=source, row=row, field=field)


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """Return the 0-based index of the first true value in a boolean array, or None."""
    flags = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
    hits = np.flatnonzero(flags)
    return int(hits[0]) if hits.size else None


def _require_columns(table: pa.Table, names: list[str], source: str, kind: str) -> None:
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise _fail(
            source,
            f"{kind} table expects columns {names}, got {table.column_names} in {source} "
            f"(missing {missing}); write the table with the {kind.lower()} schema.",
            field=missing[0],
        )


def _string_column(table: pa.Table, name: str, source: str) -> pa.ChunkedArray:
    column = table.column(name)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    if not pa.types.is_string(column.type):
        raise _fail(
            source,
            f"Table validation expects column '{name}' of {source} to be a string column, "
            f"got type {column.type}; store the text as strings.",
            field=name,
        )
    return column


def _check_no_nulls(column: pa.ChunkedArray, name: str, source: str) -> None:
    row = _first_true(column.is_null()) if column.null_count else None
    if row is not None:
        raise _fail(
            source,
            f"Table validation expects no missing values in column '{name}' of {source}, "
            f"got a null at row {row} ({column.null_count} nulls in all); fill or drop those rows.",
            row=row,
            field=name,
        )


def _check_text(column: pa.ChunkedArray, name: str, source: str) -> None:
    _check_no_nulls(column, name, source)
    if name == "pair_id":
        return
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)
    row = _first_true(blank)
    if row is not None:
        raise _fail(
            source,
            f"Table validation expects non-empty text in column '{name}' of {source}, "
            f"got an empty or whitespace-only value at row {row}; drop that row.",
            row=row,
            field=name,
        )


def _check_unique_ids(column: pa.ChunkedArray, source: str) -> None:
    if len(pc.unique(column)) == len(column):
        return
    ids = column.to_pylist()
    seen: dict[str, int] = {}
    for index, value in enumerate(ids):
        if value in seen:
            raise _fail(
                source,
                f"Table validation expects unique pair_id values in {source}, got '{value}' at rows "
                f"{seen[value]} and {index}; deduplicate the pairs (pairs.make_pairs_table does this).",
                row=index,
                field="pair_id",
            )
        seen[value] = index


def _pair_columns(table: pa.Table, source: str, kind: str) -> list[pa.ChunkedArray]:
    _require_columns(table, PAIRS_SCHEMA.names, source, kind)
    columns = [_string_column(table, name, source) for name in PAIRS_SCHEMA.names]
    for name, column in zip(PAIRS_SCHEMA.names, columns, strict=True):
        _check_text(column, name, source)
    _check_unique_ids(columns[0], source)
    return columns


def _with_metadata(table: pa.Table, metadata: dict[bytes, bytes] | None) -> pa.Table:
    return table.replace_schema_metadata(metadata) if metadata else table


def validate_pairs_table(table: pa.Table, source: str) -> pa.Table:
    """Check a pair table against ``PAIRS_SCHEMA`` and return it in exactly that schema.

    Lossless conversions are applied (``large_string`` or dictionary-encoded text to ``string``).
    Columns other than the three pair columns are ignored and not returned, so a labels table can
    be used wherever a pairs table is expected. Schema metadata (lineage) is kept.

    Args:
        table: The table to check.
        source: The file name or URI, used in error messages.

    Returns:
        The table with the columns ``pair_id, sentence1, sentence2`` in ``PAIRS_SCHEMA``.

    Raises:
        InputDataError: On a missing column, a non-string column, a null, an empty sentence or a
            duplicate ``pair_id``; the message names ``source``, the column and the first bad row.
    """
    columns = _pair_columns(table, source, "Pairs")
    result = pa.Table.from_arrays(columns, schema=PAIRS_SCHEMA)
    return _with_metadata(result, table.schema.metadata)


def _float_column(table: pa.Table, name: str, source: str) -> pa.ChunkedArray:
    column = table.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise _fail(
            source,
            f"Labels table expects column '{name}' of {source} to be float32, got type {column.type}; "
            "store scores as floats (or drop non-score columns).",
            field=name,
        )
    column = column.cast(pa.float32())
    _check_no_nulls(column, name, source)
    finite = np.isfinite(column.to_numpy())
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise _fail(
            source,
            f"Labels table expects finite values in column '{name}' of {source}, got "
            f"{column[row].as_py()} at row {row} (NaN, inf, or beyond float32 range); fix the scorer output.",
            row=row,
            field=name,
        )
    return column


def validate_labels_table(table: pa.Table, source: str) -> pa.Table:
    """Check a pseudo-label table against ``LABELS_SCHEMA`` and return it normalised.

    The pair columns are checked as in :func:`validate_pairs_table`; ``score`` and every extra column
    must be numeric, non-null and finite, and are cast to float32 (float64 scores are rounded to the
    nearest float32; values beyond the float32 range are rejected as non-finite).

    Args:
        table: The table to check.
        source: The file name or URI, used in error messages.

    Returns:
        The table with the ``LABELS_SCHEMA`` columns first, then the extra columns in their order.

    Raises:
        InputDataError: On any contract violation, naming ``source``, the column and the first bad row.
    """
    _require_columns(table, LABELS_SCHEMA.names, source, "Labels")
    pair_columns = _pair_columns(table, source, "Labels")
    extras = [name for name in table.column_names if name not in LABELS_SCHEMA.names]
    if len(set(extras)) != len(extras):
        raise _fail(source, f"Labels table expects unique column names in {source}, got {extras}.")
    fields = list(LABELS_SCHEMA) + [pa.field(name, pa.float32(), nullable=False) for name in extras]
    score_columns = [_float_column(table, name, source) for name in ["score", *extras]]
    result = pa.Table.from_arrays(pair_columns + score_columns, schema=pa.schema(fields))
    return _with_metadata(result, table.schema.metadata)


def with_lineage(table: pa.Table, lineage: dict[str, Any]) -> pa.Table:
    """Return ``table`` with ``lineage`` stored as JSON in its schema metadata.

    Other metadata keys are kept; an existing lineage entry is replaced.

    Args:
        table: The table to annotate.
        lineage: JSON-serialisable description of how the table was made (stage, config, inputs).

    Raises:
        TypeError: If ``lineage`` is not JSON-serialisable.
    """
    try:
        encoded = json.dumps(lineage, sort_keys=True, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"with_lineage expects a JSON-serialisable dict, got {exc}; convert values to str/int/float/list."
        ) from exc
    metadata = dict(table.schema.metadata or {})
    metadata[LINEAGE_KEY] = encoded
    return table.replace_schema_metadata(metadata)


def read_lineage(table_or_schema: pa.Table | pa.Schema) -> dict[str, Any]:
    """Return the lineage dict stored by :func:`with_lineage`, or ``{}`` when there is none."""
    schema = table_or_schema.schema if isinstance(table_or_schema, pa.Table) else table_or_schema
    raw = (schema.metadata or {}).get(LINEAGE_KEY)
    if raw is None:
        return {}
    value = json.loads(raw.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError(
            f"read_lineage expects a JSON object under {LINEAGE_KEY!r}, got {type(value).__name__}."
        )
    return value


def _score_array(values: np.ndarray, name: str, n_rows: int) -> pa.Array:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != n_rows:
        raise InputDataError(
            f"labels_table expects '{name}' as a 1-D array with one value per pair ({n_rows}), "
            f"got shape {array.shape}; score every pair of the pairs table in order.",
            source="<labels_table>",
            field=name,
        )
    return pa.array(array.astype(np.float32, copy=False), type=pa.float32())


def labels_table(pairs: pa.Table, scores: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Build a ``LABELS_SCHEMA`` table whose rows align with ``pairs`` (``algorithm.md`` §1.4).

    Args:
        pairs: A table in ``PAIRS_SCHEMA`` (extra columns are ignored).
        scores: One pseudo-label per row of ``pairs``, in the same order.
        extra: Optional further per-pair score columns, e.g. ``{"score__bert": ...}``.

    Returns:
        The validated labels table. The lineage of ``pairs`` is not copied: add the labelling
        stage's own lineage with :func:`with_lineage`.

    Raises:
        InputDataError: If a score array has the wrong length or shape, a name collides with a
            pair column, or a score is not finite.
    """
    base = validate_pairs_table(pairs, "<labels_table pairs>")
    arrays = [*base.columns, _score_array(scores, "score", base.num_rows)]
    names = [*LABELS_SCHEMA.names]
    for name, values in (extra or {}).items():
        if name in names:
            raise InputDataError(
                f"labels_table expects extra column names other than {names}, got '{name}'; rename it.",
                source="<labels_table>",
                field=name,
            )
        arrays.append(_score_array(values, name, base.num_rows))
        names.append(name)
    return validate_labels_table(pa.Table.from_arrays(arrays, names=names), "<labels_table>")
