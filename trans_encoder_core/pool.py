"""The unlabeled training pool of the paper (``algorithm.md`` §1.3): benchmark pairs without labels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from trans_encoder_core.benchmarks import (
    FIX_HINT,
    STS_YEARS,
    TASKS,
    LabelledPairs,
    available_tasks,
    check_task,
    concat_pairs,
    load_sickr,
    load_sts_year,
    load_stsb,
)
from trans_encoder_core.errors import BenchmarkDataError, ConfigError
from trans_encoder_core.pairs import make_pairs_table


def _pool_parts(root: Path, task: str, mode: str, check: bool) -> list[LabelledPairs]:
    """Return the sets of ``task`` that enter the pool; inductive mode drops every test set (§6.3)."""
    transductive = mode == "transductive"
    if task in STS_YEARS:
        return [load_sts_year(root, STS_YEARS[task], check_counts=check)] if transductive else []
    if task == "stsb":
        splits = ("train", "dev", "test") if transductive else ("train", "dev")
        return [load_stsb(root, split, check_counts=check) for split in splits]  # type: ignore[arg-type]
    splits = ("train", "trial", "test") if transductive else ("train", "trial")
    return [load_sickr(root, split, check_counts=check) for split in splits]  # type: ignore[arg-type]


def training_pool(
    root: str | os.PathLike[str],
    *,
    mode: Literal["transductive", "inductive"] = "transductive",
    tasks: Sequence[str] = TASKS,
    check_counts: bool = True,
) -> tuple[pa.Table, dict[str, Any]]:
    """Build the unlabeled training pool of the paper (§1.3) from the available tasks.

    Transductive (the paper): every pair of every split, test pairs and unscored STS15/16 pairs
    included. Inductive: no test pairs, so STS12–16 are left out entirely and only STS-B train+dev
    and SICK train+trial remain. The pool is deduplicated by ``pair_id`` across all sources at once
    (first occurrence kept, in task order). This is a tuple key over stripped text, unlike the
    official ``s1 + s2`` string key with a separate set for SICK (§6.1 item 10), so the count can be
    slightly lower than the paper's 37,081.

    Returns:
        ``(table, stats)``: a ``PAIRS_SCHEMA`` table and a dict with ``mode``, ``sources`` (pairs read
        per set), ``n_input``, ``n_unscored``, ``n_duplicates``, ``n_pairs``, ``tasks`` (used),
        ``excluded`` (test sets left out), ``missing`` (absent tasks) and ``missing_reasons``.

    Raises:
        ConfigError: Unknown mode or task.
        BenchmarkDataError: A present task has a bad file, or no pair at all was found.
    """
    if mode not in ("transductive", "inductive"):
        raise ConfigError(f"training_pool expects mode 'transductive' or 'inductive', got {mode!r}.")
    for task in tasks:
        check_task(task)
    availability = available_tasks(root)
    missing = {task: reason for task in tasks if (reason := availability[task]) is not None}
    parts = [
        part
        for task in tasks
        if task not in missing
        for part in _pool_parts(Path(root), task, mode, check_counts)
    ]
    if not parts:
        raise BenchmarkDataError(
            f"training_pool expects at least one pair from tasks {list(tasks)} ({mode}) under {root}, got "
            f"none (missing: {missing or 'none'}); {FIX_HINT}.",
            path=str(root),
        )
    data = concat_pairs("pool", parts)
    table, n_duplicates = make_pairs_table(data.sentence1, data.sentence2)
    used = [task for task in tasks if task not in missing]
    stats: dict[str, Any] = {
        "mode": mode,
        "tasks": used,
        "sources": {part.name: len(part) for part in parts},
        "excluded": _excluded(used) if mode == "inductive" else [],
        "n_input": len(data),
        "n_unscored": int(np.count_nonzero(np.isnan(data.scores))),
        "n_duplicates": n_duplicates,
        "n_pairs": table.num_rows,
        "missing": list(missing),
        "missing_reasons": missing,
    }
    return table, stats


def _excluded(tasks: Sequence[str]) -> list[str]:
    names = {"stsb": "stsb-test", "sickr": "sickr-test"}
    return [names.get(task, task) for task in tasks]


def subsample(table: pa.Table, max_pairs: int | None, seed: int | None) -> pa.Table:
    """A seeded random subset of at most `max_pairs` rows, in pool order (all rows when None)."""
    if max_pairs is None or table.num_rows <= max_pairs:
        return table
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(table.num_rows, size=max_pairs, replace=False))
    return table.take(keep)
