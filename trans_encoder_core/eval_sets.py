"""Evaluation sets as data: labelled pair files with the metric their labels call for.

A labelled pair file is a pair file (Parquet, CSV, TSV or JSONL, read by :mod:`pair_files`) with one
more column holding a numeric label. It can be the dev set that every selection uses, or one of any
number of named test sets. The metric follows the labels unless overridden: ROC-AUC × 100 when
every label is 0 or 1 (the paper's binary tasks, ``algorithm.md`` §1.7), Spearman × 100 otherwise.

Rows are kept as in the file (no deduplication, text not normalised), like the STS test sets of
:mod:`trans_encoder_core.benchmarks`. Every error names the file, the row and the column.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from trans_encoder_core.benchmarks import LabelledPairs
from trans_encoder_core.errors import ConfigError, InputDataError
from trans_encoder_core.metrics import Metric
from trans_encoder_core.pair_files import (
    PairFormat,
    _decode,
    _read_csv,
    _read_jsonl,
    _read_parquet,
    _read_source,
    _read_tsv,
    _resolve_format,
)
from trans_encoder_core.pairs import RawRow, input_error, valid_rows

__all__ = [
    "EvalFile",
    "EvalSet",
    "check_selectable",
    "eval_file_digest",
    "eval_sets_from_files",
    "read_eval_set",
]

MetricChoice = Literal["auto", "spearman", "roc_auc"]
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DIGEST_VERSION = 1  # bump when the reading rules change what a file's bytes mean


class EvalFile(BaseModel):
    """Where a labelled pair file is and how to read it (a flow config can hold it as is).

    Attributes:
        uri: path or URL of the file (the caller opens URLs, e.g. with fsspec).
        format: "auto" (from the extension), "parquet", "csv", "tsv" or "jsonl".
        sentence1_column: column of the first sentence.
        sentence2_column: column of the second sentence.
        label_column: column of the numeric label (a graded score, or 0/1).
        metric: "auto" (ROC-AUC when every label is 0 or 1, else Spearman), "spearman" or "roc_auc".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    format: PairFormat = "auto"
    sentence1_column: str = "sentence1"
    sentence2_column: str = "sentence2"
    label_column: str = "label"
    metric: MetricChoice = "auto"


@dataclass(frozen=True, eq=False)
class EvalSet(LabelledPairs):
    """Labelled pairs with the metric that scores them.

    Attributes:
        metric: "spearman" or "roc_auc" (see :data:`trans_encoder_core.metrics.METRICS`).
        source: where the pairs come from (a file name, or a benchmark and its files).
        digest: content digest of the source and reading options (see :func:`eval_file_digest`).
    """

    metric: Metric = "spearman"
    source: str = ""
    digest: str = ""


def eval_file_digest(data: bytes, spec: EvalFile) -> str:
    """The content digest of a labelled pair file: sha256 over its bytes and the reading options.

    The digest covers the sha256 of ``data``, the resolved format (from ``spec.uri`` when "auto"),
    the three column names and the requested metric; not the URI, so a moved or renamed copy with
    the same content and options keeps its digest. Use it in stage keys.
    """
    options = {
        "version": DIGEST_VERSION,
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": _resolve_format(spec.format, spec.uri),
        "columns": [spec.sentence1_column, spec.sentence2_column, spec.label_column],
        "metric": spec.metric,
    }
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode("utf-8")).hexdigest()


def _cells(data: bytes, fmt: str, name: str, col1: str, col2: str) -> list[RawRow]:
    if fmt == "parquet":
        return _read_parquet(data, name, col1, col2)
    reader = {"csv": _read_csv, "tsv": _read_tsv, "jsonl": _read_jsonl}[fmt]
    return reader(_decode(data, name), name, col1, col2)


def _parse_label(value: object, name: str, unit: str, position: int, column: str) -> float:
    """One label cell as a finite float; bools count as 0/1."""
    problem = None
    if value is None or (isinstance(value, str) and not value.strip()):
        problem = "a missing value"
    elif isinstance(value, bool | int | float | str):
        try:
            number = float(value)
        except ValueError:
            problem = f"the non-numeric value {value!r:.40}"
        else:
            if math.isfinite(number):
                return number
            problem = f"the non-finite value {value!r:.40}"
    else:
        problem = f"a value of type {type(value).__name__}"
    raise input_error(
        name,
        f"Evaluation set expects a number in label column {column!r} of {name}, got {problem} at {unit} "
        f"{position}; fix or remove that row.",
        row=position,
        field=column,
    )


def _resolve_metric(labels: np.ndarray, positions: list[int], spec: EvalFile, name: str, unit: str) -> Metric:
    binary = (labels == 0) | (labels == 1)
    if spec.metric == "auto":
        return "roc_auc" if bool(binary.all()) else "spearman"
    if spec.metric == "roc_auc" and not binary.all():
        bad = int(np.flatnonzero(~binary)[0])
        raise input_error(
            name,
            f"Evaluation set expects labels 0 or 1 for metric 'roc_auc' in column {spec.label_column!r} of "
            f"{name}, got {labels[bad]:g} at {unit} {positions[bad]}; fix it or use metric 'spearman'.",
            row=positions[bad],
            field=spec.label_column,
        )
    return spec.metric


def read_eval_set(
    spec: EvalFile | str, *, name: str, source: str | os.PathLike[str] | BinaryIO | None = None
) -> EvalSet:
    """Read a labelled pair file into an :class:`EvalSet` with its metric and digest.

    Args:
        spec: the file and its reading options (a plain string is the URI with default options).
        name: the set's name (used in result keys).
        source: an open binary file object or a path to read instead of ``spec.uri`` (tasks pass
            ``fsspec.open(uri, "rb")``); messages and format inference still use ``spec.uri``.

    Raises:
        InputDataError: An unreadable file, a missing column, an invalid sentence, a missing,
            non-numeric or non-finite label, a non-0/1 label for "roc_auc", or labels that are all
            equal (no metric is defined on them).
        ConfigError: Two of the three columns have the same name.
    """
    spec = EvalFile(uri=spec) if isinstance(spec, str) else spec
    columns = (spec.sentence1_column, spec.sentence2_column, spec.label_column)
    if len(set(columns)) != 3:
        raise ConfigError(
            f"Evaluation set expects three different column names, got {columns} for {spec.uri}."
        )
    data, label = _read_source(spec.uri if source is None else source, spec.uri)
    fmt = _resolve_format(spec.format, label)
    if not data:
        raise input_error(label, f"Evaluation set expects a non-empty file, got 0 bytes in {label}.")
    rows = _cells(data, fmt, label, spec.sentence1_column, spec.sentence2_column)
    if not rows:
        raise input_error(label, f"Evaluation set expects at least one data row in {label}, got none.")
    unit = "row" if fmt == "parquet" else "line"
    s1, s2 = valid_rows(rows, unit, label, columns[:2], "error")
    try:
        label_rows = _cells(data, fmt, label, spec.label_column, spec.sentence1_column)
    except InputDataError as exc:
        if exc.field != spec.label_column:
            raise
        raise input_error(
            label,
            f"Evaluation set expects a label column {spec.label_column!r} in {label}, got none; add it or "
            "pass label_column= naming the column that holds the labels.",
            field=spec.label_column,
        ) from exc
    positions = [position for position, _, _ in label_rows]
    values = [_parse_label(cell, label, unit, pos, spec.label_column) for pos, cell, _ in label_rows]
    labels = np.asarray(values, dtype=np.float64)
    metric = _resolve_metric(labels, positions, spec, label, unit)
    result = EvalSet(name, s1, s2, labels, metric=metric, source=label, digest=eval_file_digest(data, spec))
    check_selectable(result)
    return result


def check_selectable(data: EvalSet, role: str = "evaluation") -> None:
    """Raise unless the set's metric is defined on its labels (two classes, or two distinct scores)."""
    values = np.unique(data.scores[~np.isnan(data.scores)])
    if values.size >= 2:
        return
    found = f"only the label {values[0]:g}" if values.size else "no label"
    need = "both classes 0 and 1" if data.metric == "roc_auc" else "at least two different scores"
    raise input_error(
        data.source or data.name,
        f"{role.capitalize()} set {data.name!r} expects {need} for metric {data.metric!r}, got {found} in "
        f"{len(data)} rows of {data.source or data.name}; add pairs of the other class or use another set.",
    )


def _check_name(name: str) -> str:
    if not _SET_NAME.match(name):
        raise ConfigError(
            f"Evaluation sets expect names of letters, digits, '.', '_' or '-' (at most 64), got {name!r}."
        )
    return name


def eval_sets_from_files(
    test_files: Mapping[str, EvalFile | str],
    dev_file: EvalFile | str | None = None,
    *,
    open_file: Callable[[str], BinaryIO] | None = None,
) -> tuple[EvalSet | None, dict[str, EvalSet]]:
    """Read a dev file (optional) and named test files into evaluation sets with their metrics.

    Args:
        test_files: test set name -> file (names: letters, digits, '.', '_', '-'; "dev" is the dev set's).
        dev_file: the labelled file every selection uses, or None (no dev selection).
        open_file: opens a URI as a binary file object (tasks: ``lambda u: fsspec.open(u, "rb").open()``);
            None reads local paths.

    Returns:
        ``(dev set or None, {name: test set})`` in the order of ``test_files``.
    """

    def load(spec: EvalFile | str, name: str) -> EvalSet:
        spec = EvalFile(uri=spec) if isinstance(spec, str) else spec
        if open_file is None:
            return read_eval_set(spec, name=name)
        handle = open_file(spec.uri)
        try:
            return read_eval_set(spec, name=name, source=handle)
        finally:
            handle.close()

    for name in test_files:
        if _check_name(name) == "dev":
            raise ConfigError("Evaluation sets expect test set names other than 'dev' (the dev set's name).")
    dev = load(dev_file, "dev") if dev_file is not None else None
    return dev, {name: load(spec, name) for name, spec in test_files.items()}
