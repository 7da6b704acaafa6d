"""MRPC, QNLI and QQP in their original formats, with the paper's splits and pools (``algorithm.md`` §1.7).

The data folder is passed in by the caller (core never reads the environment; see
:func:`resolve_binary_root`) and laid out as in ``shared/data/binary/README.md``::

    root/mrpc/msr_paraphrase_train.txt, msr_paraphrase_test.txt, dev_ids.tsv  (SentEval/GLUE)
    root/qnli/dev.tsv [, train.tsv]                                           (GLUE QNLI v2)
    root/qqp/{train,dev,test}_pairs.tsv, or root/qqp/classification/...       (sbert quora-IR)

Every file is tab-separated with quoting off (the text holds bare ``"``); a UTF-8 byte-order mark is
skipped. Each task has train (pool only), dev and test splits, all with 0/1 labels:

* MRPC: train = the train file minus GLUE's 408 dev ids (3,668), dev = those ids in train-file order,
  test = the test file (1,725); the pool is all 5,801 pairs.
* QNLI: 1 = entailment; dev = the first 1,000 rows of dev.tsv, test = the other 4,463; the pool is the
  first 10,000 rows of train.tsv plus all of dev.tsv. Without train.tsv the pool is dev.tsv alone
  (5,463 pairs, ``stats["variant"] == "dev-only"``): not the paper's pool, say so in results.
* QQP: the first 10,000 / 1,000 / 10,000 rows of train/dev/test; all 21,000 in the pool.

QNLI pairs (question, sentence) are asymmetric: the cross-encoder must not train on both orders
(:data:`BOTH_ORDERS`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from trans_encoder_core.benchmarks import LabelledPairs, concat_pairs
from trans_encoder_core.errors import BenchmarkDataError, ConfigError
from trans_encoder_core.eval_sets import EvalSet
from trans_encoder_core.pairs import dedup_pairs, valid_rows

BINARY_DATA_ENV_VAR = "TRANS_ENCODER_BINARY_DATA"
BINARY_TASKS = ("mrpc", "qnli", "qqp")
BOTH_ORDERS: Mapping[str, bool] = {"mrpc": True, "qnli": False, "qqp": True}  # cross training, §1.7
MRPC_COUNTS = {"train": 4076, "test": 1725, "dev_ids": 408}
QNLI_DEV_ROWS, QNLI_DEV_SPLIT, QNLI_TRAIN_ROWS = 5463, 1000, 10_000
QQP_ROWS = {"train": 10_000, "dev": 1_000, "test": 10_000}
_QNLI_LABELS = {"entailment": 1.0, "not_entailment": 0.0}
FIX_HINT = (
    f"use the original release files (shared/data/binary/README.md) or point {BINARY_DATA_ENV_VAR} at a "
    "folder that has them"
)


@dataclass(frozen=True, eq=False)
class BinarySplits:
    """The splits of one binary task, with the sha256 of every file read (for stage keys)."""

    task: str
    train: LabelledPairs | None
    dev: EvalSet
    test: EvalSet
    files: Mapping[str, str]  # path -> sha256 of its bytes


def resolve_binary_root(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """Return the binary-task folder: ``explicit`` if given, else ``env[BINARY_DATA_ENV_VAR]``, else None."""
    value = explicit if explicit else env.get(BINARY_DATA_ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


def _records(path: Path, files: dict[str, str], minimum: int) -> list[tuple[int, list[str]]]:
    """``(line number, tab-separated fields)`` of every non-blank line, BOM skipped, quoting off."""
    if not path.is_file():
        raise BenchmarkDataError(
            f"Binary task loader expects the file {path}, got none; {FIX_HINT}.", path=str(path)
        )
    data = path.read_bytes()
    files[str(path)] = hashlib.sha256(data).hexdigest()
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BenchmarkDataError(
            f"Binary task loader expects UTF-8 text in {path}, got an invalid byte at offset {exc.start}; "
            f"{FIX_HINT}.",
            path=str(path),
        ) from exc
    records = [
        (n, line.rstrip("\r").split("\t")) for n, line in enumerate(text.split("\n"), 1) if line.strip()
    ]
    for number, fields in records:
        if len(fields) < minimum:
            raise BenchmarkDataError(
                f"Binary task loader expects at least {minimum} tab-separated fields at line {number} of "
                f"{path}, got {len(fields)}; {FIX_HINT}.",
                path=str(path),
            )
    return records


def _columns(path: Path, header: list[str], names: tuple[str, ...]) -> list[int]:
    header = [cell.strip() for cell in header]
    if missing := [name for name in names if name not in header]:
        raise BenchmarkDataError(
            f"Binary task loader expects header columns {list(names)} in {path}, got {header} (missing "
            f"{missing}); {FIX_HINT}.",
            path=str(path),
        )
    return [header.index(name) for name in names]


def _label(text: str, path: Path, line: int, mapping: Mapping[str, float] | None = None) -> float:
    value = (mapping or {"0": 0.0, "1": 1.0}).get(text.strip())
    if value is None:
        expected = list(mapping or ("0", "1"))
        raise BenchmarkDataError(
            f"Binary task loader expects a label in {expected} at line {line} of {path}, got {text!r}; "
            f"{FIX_HINT}.",
            path=str(path),
        )
    return value


def _count(path: Path, what: str, expected: int, found: int, exact: bool, check: bool) -> None:
    if check and (found != expected if exact else found < expected):
        raise BenchmarkDataError(
            f"Binary task loader expects {'' if exact else 'at least '}{expected} {what} in {path}, got "
            f"{found}; "
            f"{FIX_HINT} (or pass check_counts=False for a custom subset).",
            path=str(path),
            expected=expected,
            found=found,
        )


def _pairs(name: str, rows: list[tuple[str, str, float]]) -> LabelledPairs:
    return LabelledPairs(name, [r[0] for r in rows], [r[1] for r in rows], np.array([r[2] for r in rows]))


def _eval_set(task: str, split: str, rows: list[tuple[str, str, float]], files: Mapping[str, str]) -> EvalSet:
    digest = hashlib.sha256(repr((task, split, sorted(files.values()))).encode()).hexdigest()
    data = _pairs(f"{task}-{split}", rows)
    source = f"{task} {split} ({', '.join(files)})"
    return EvalSet(
        data.name, data.sentence1, data.sentence2, data.scores, metric="roc_auc", source=source, digest=digest
    )


def _mrpc_rows(path: Path, files: dict[str, str]) -> list[tuple[str, str, str, float]]:
    """``(#1 ID + tab + #2 ID, #1 String, #2 String, label)`` of an MRPC release file."""
    header, *records = _records(path, files, 5)
    quality, id1, id2, s1, s2 = _columns(
        path, header[1], ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
    )
    return [(f"{f[id1]}\t{f[id2]}", f[s1], f[s2], _label(f[quality], path, n)) for n, f in records]


def load_mrpc(root: str | os.PathLike[str], *, check_counts: bool = True) -> BinarySplits:
    """MRPC with GLUE's split: dev = the 408 ids of ``dev_ids.tsv``, train = the rest of the train file."""
    folder, files = Path(root) / "mrpc", {}
    train_path, ids_path = folder / "msr_paraphrase_train.txt", folder / "dev_ids.tsv"
    train_all = _mrpc_rows(train_path, files)
    test = _mrpc_rows(folder / "msr_paraphrase_test.txt", files)
    dev_ids = {"\t".join(f[:2]) for _, f in _records(ids_path, files, 2)}
    _count(train_path, "pairs", MRPC_COUNTS["train"], len(train_all), True, check_counts)
    _count(folder / "msr_paraphrase_test.txt", "pairs", MRPC_COUNTS["test"], len(test), True, check_counts)
    dev = [row[1:] for row in train_all if row[0] in dev_ids]
    _count(ids_path, "dev ids found in the train file", len(dev_ids), len(dev), True, True)
    _count(ids_path, "dev ids", MRPC_COUNTS["dev_ids"], len(dev_ids), True, check_counts)
    train = [row[1:] for row in train_all if row[0] not in dev_ids]
    return BinarySplits(
        "mrpc",
        _pairs("mrpc-train", train),
        _eval_set("mrpc", "dev", dev, files),
        _eval_set("mrpc", "test", [row[1:] for row in test], files),
        files,
    )


def _qnli_rows(path: Path, files: dict[str, str], limit: int | None) -> list[tuple[str, str, float]]:
    header, *records = _records(path, files, 4)
    question, sentence, label = _columns(path, header[1], ("question", "sentence", "label"))
    records = records[:limit] if limit is not None else records
    return [(f[question], f[sentence], _label(f[label], path, n, _QNLI_LABELS)) for n, f in records]


def load_qnli(
    root: str | os.PathLike[str], *, with_train: bool | None = None, check_counts: bool = True
) -> BinarySplits:
    """QNLI v2 from GLUE's dev.tsv (and train.tsv): 1 = entailment; dev/test = dev.tsv rows 1–1,000 / rest.

    Args:
        with_train: read the first 10,000 rows of ``train.tsv`` for the pool: True requires the file,
            False never reads it, None reads it when present.
    """
    folder, files = Path(root) / "qnli", {}
    dev_path, train_path = folder / "dev.tsv", folder / "train.tsv"
    rows = _qnli_rows(dev_path, files, None)
    _count(dev_path, "pairs", QNLI_DEV_ROWS, len(rows), True, check_counts)
    train = None
    if with_train or (with_train is None and train_path.is_file()):
        train_rows = _qnli_rows(train_path, files, QNLI_TRAIN_ROWS)
        _count(train_path, "pairs", QNLI_TRAIN_ROWS, len(train_rows), False, check_counts)
        train = _pairs("qnli-train", train_rows)
    dev_files = {str(dev_path): files[str(dev_path)]}
    dev, test = rows[:QNLI_DEV_SPLIT], rows[QNLI_DEV_SPLIT:]
    return BinarySplits(
        "qnli",
        train,
        _eval_set("qnli", "dev", dev, dev_files),
        _eval_set("qnli", "test", test, dev_files),
        files,
    )


def load_qqp(
    root: str | os.PathLike[str], *, rows: Mapping[str, int] = QQP_ROWS, check_counts: bool = True
) -> BinarySplits:
    """QQP from sentence-transformers' quora-IR ``classification/*_pairs.tsv``: each split's first rows."""
    folder, files = Path(root) / "qqp", {}
    if (folder / "classification").is_dir():
        folder = folder / "classification"
    splits: dict[str, list[tuple[str, str, float]]] = {}
    for split in ("train", "dev", "test"):
        path = folder / f"{split}_pairs.tsv"
        header, *records = _records(path, files, 5)
        q1, q2, label = _columns(path, header[1], ("question1", "question2", "is_duplicate"))
        _count(path, "pairs", rows[split], len(records), False, check_counts)
        splits[split] = [(f[q1], f[q2], _label(f[label], path, n)) for n, f in records[: rows[split]]]
    return BinarySplits(
        "qqp",
        _pairs("qqp-train", splits["train"]),
        _eval_set("qqp", "dev", splits["dev"], files),
        _eval_set("qqp", "test", splits["test"], files),
        files,
    )


def load_binary_task(root: str | os.PathLike[str], task: str, **options: Any) -> BinarySplits:
    """Load ``task`` (one of :data:`BINARY_TASKS`); ``options`` go to its loader."""
    loaders = {"mrpc": load_mrpc, "qnli": load_qnli, "qqp": load_qqp}
    if task not in loaders:
        raise ConfigError(f"Binary tasks expect a task in {BINARY_TASKS}, got {task!r}.")
    return loaders[task](root, **options)


def binary_eval_sets(splits: BinarySplits) -> tuple[EvalSet, dict[str, EvalSet]]:
    """``(dev set, {task: test set})``, both scored by ROC-AUC × 100."""
    return splits.dev, {splits.task: splits.test}


def binary_pool(
    splits: BinarySplits, *, mode: Literal["transductive", "inductive"] = "transductive"
) -> tuple[pa.Table, dict[str, Any]]:
    """The unlabeled pool of a binary task, shaped like :func:`trans_encoder_core.pool.training_pool`.

    Transductive (the paper, §1.7): train + dev + test pairs. Inductive: no test pairs. Pairs are
    deduplicated by ``pair_id`` (first occurrence kept); pairs with an empty sentence are dropped
    and counted in ``n_dropped``.
    """
    if mode not in ("transductive", "inductive"):
        raise ConfigError(f"binary_pool expects mode 'transductive' or 'inductive', got {mode!r}.")
    parts = [p for p in (splits.train, splits.dev) if p is not None]
    parts += [splits.test] if mode == "transductive" else []
    data = concat_pairs("pool", parts)
    rows = [(i, a, b) for i, (a, b) in enumerate(zip(data.sentence1, data.sentence2, strict=True))]
    s1, s2 = valid_rows(rows, "row", f"{splits.task} pool", ("sentence1", "sentence2"), "drop")
    table, n_duplicates = dedup_pairs(s1, s2)
    variant = "dev-only" if splits.task == "qnli" and splits.train is None else "paper"
    stats: dict[str, Any] = {
        "mode": mode,
        "tasks": [splits.task],
        "variant": variant,
        "sources": {part.name: len(part) for part in parts},
        "excluded": [] if mode == "transductive" else [splits.test.name],
        "n_input": len(data),
        "n_unscored": 0,
        "n_dropped": len(data) - len(s1),
        "n_duplicates": n_duplicates,
        "n_pairs": table.num_rows,
        "files": dict(splits.files),
        "missing": [],
        "missing_reasons": {},
    }
    return table, stats


def available_binary_tasks(root: str | os.PathLike[str]) -> dict[str, str | None]:
    """Map each task of :data:`BINARY_TASKS` to None when its required files are present, else why not."""
    base = Path(root)
    qqp = base / "qqp" / "classification" if (base / "qqp" / "classification").is_dir() else base / "qqp"
    needed = {
        "mrpc": [
            base / "mrpc" / n for n in ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt", "dev_ids.tsv")
        ],
        "qnli": [base / "qnli" / "dev.tsv"],
        "qqp": [qqp / f"{split}_pairs.tsv" for split in ("train", "dev", "test")],
    }
    result: dict[str, str | None] = {}
    for task, paths in needed.items():
        missing = [str(path) for path in paths if not path.is_file()]
        result[task] = f"missing {', '.join(missing)}" if missing else None
    return result
