"""Loaders for the original STS12–16, STS-B and SICK-R releases (``algorithm.md`` §1.3, §3).

The data folder is passed in by the caller (core never reads the environment); it is laid out as::

    root/sts12/ … root/sts16/   STS.input.<sub>.txt + STS.gs.<sub>.txt (SemEval releases)
    root/stsb/                  sts-train.csv, sts-dev.csv, sts-test.csv (tab-separated, no header)
    root/sickr/                 SICK_annotated.txt, or SICK_{train,trial,test_annotated}.txt

Every file is checked against :data:`MANIFEST` (pair counts from the data README), so a truncated or
different release fails loudly instead of silently changing the numbers. Sentences are returned as
they are in the files (the pool in :func:`trans_encoder_core.pool.training_pool` normalises them
through ``pairs``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from trans_encoder_core.errors import BenchmarkDataError, ConfigError

DATA_ENV_VAR = "TRANS_ENCODER_DATA"
TASKS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")  # the paper's 7-task order (§3.3)
STS_YEARS = {"sts12": 2012, "sts13": 2013, "sts14": 2014, "sts15": 2015, "sts16": 2016}

# task -> sub-dataset or split -> (pairs in the file, pairs with a gold score); from the data README.
MANIFEST: Mapping[str, Mapping[str, tuple[int, int]]] = {
    "sts12": {
        "MSRpar": (750, 750),
        "MSRvid": (750, 750),
        "SMTeuroparl": (459, 459),
        "surprise.OnWN": (750, 750),
        "surprise.SMTnews": (399, 399),
    },
    "sts13": {"FNWN": (189, 189), "OnWN": (561, 561), "headlines": (750, 750)},  # SMT withdrawn
    "sts14": {
        "OnWN": (750, 750),
        "deft-forum": (450, 450),
        "deft-news": (300, 300),
        "headlines": (750, 750),
        "images": (750, 750),
        "tweet-news": (750, 750),
    },
    "sts15": {
        "answers-forums": (2000, 375),
        "answers-students": (1500, 750),
        "belief": (2000, 375),
        "headlines": (1500, 750),
        "images": (1500, 750),
    },
    "sts16": {
        "answer-answer": (1572, 254),
        "headlines": (1498, 249),
        "plagiarism": (1271, 230),
        "postediting": (3287, 244),
        "question-question": (1555, 209),
    },
    "stsb": {"train": (5749, 5749), "dev": (1500, 1500), "test": (1379, 1379)},
    "sickr": {"train": (4439, 4439), "trial": (495, 495), "test": (4906, 4906)},  # SICK_annotated.txt
}
SICK_SEMEVAL_MANIFEST = {"train": (4500, 4500), "trial": (500, 500), "test": (4927, 4927)}  # 3-file release
SICK_ANNOTATED = "SICK_annotated.txt"
SICK_SEMEVAL_FILES = {"train": "SICK_train.txt", "trial": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
FIX_HINT = (
    f"copy the original release files (see data/README.md) or point {DATA_ENV_VAR} at a folder that has them"
)


@dataclass(frozen=True, eq=False)
class LabelledPairs:
    """Sentence pairs of one benchmark set with gold scores (``NaN`` = pair without a gold score)."""

    name: str
    sentence1: list[str]
    sentence2: list[str]
    scores: np.ndarray  # float64, same length as the sentences

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float64))
        if not len(self.sentence1) == len(self.sentence2) == len(self.scores):
            raise ValueError(
                f"LabelledPairs expects equal lengths, got {len(self.sentence1)} sentence1, "
                f"{len(self.sentence2)} sentence2 and {len(self.scores)} scores for {self.name!r}."
            )

    def __len__(self) -> int:
        return len(self.sentence1)

    def scored(self) -> LabelledPairs:
        """Return only the pairs that have a gold score (what the evaluation uses, §3.3)."""
        keep = np.flatnonzero(~np.isnan(self.scores))
        return LabelledPairs(
            self.name, [self.sentence1[i] for i in keep], [self.sentence2[i] for i in keep], self.scores[keep]
        )


def resolve_data_root(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """Return the benchmark folder: ``explicit`` if given, else ``env[DATA_ENV_VAR]``, else None.

    Callers pass ``os.environ``; the core itself never reads the environment. Existence is not
    checked here: :func:`available_tasks` reports what is missing.
    """
    value = explicit if explicit else env.get(DATA_ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


def _read_lines(path: Path) -> list[str]:
    """Return the lines of a UTF-8 file without line endings (``\\r`` stripped, no quoting rules)."""
    if not path.is_file():
        raise BenchmarkDataError(
            f"Benchmark loader expects the file {path}, got no such file; {FIX_HINT}.", path=str(path)
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BenchmarkDataError(
            f"Benchmark loader expects UTF-8 text in {path}, got an invalid byte at line {line} "
            f"(byte offset {exc.start}); {FIX_HINT}.",
            path=str(path),
        ) from exc
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _check_count(path: Path, what: str, expected: int, found: int, check: bool) -> None:
    if check and found != expected:
        raise BenchmarkDataError(
            f"Benchmark loader expects {expected} {what} in {path}, got {found}; the file is incomplete or "
            f"from another release: {FIX_HINT} (or pass check_counts=False for a custom subset).",
            path=str(path),
            expected=expected,
            found=found,
        )


def _parse_score(text: str, path: Path, line: int) -> float:
    if not text.strip():
        return float("nan")
    try:
        return float(text)
    except ValueError as exc:
        raise BenchmarkDataError(
            f"Benchmark loader expects a number or nothing at line {line} of {path}, got {text!r}; "
            f"{FIX_HINT}.",
            path=str(path),
        ) from exc


def _fields(line: str, path: Path, number: int, minimum: int) -> list[str]:
    fields = line.split("\t")
    if len(fields) < minimum:
        raise BenchmarkDataError(
            f"Benchmark loader expects at least {minimum} tab-separated fields at line {number} of {path}, "
            f"got {len(fields)}; {FIX_HINT}.",
            path=str(path),
        )
    return fields


def _load_sts_subset(folder: Path, sub: str, counts: tuple[int, int], check: bool) -> LabelledPairs:
    """Read one ``STS.input.<sub>.txt`` with its aligned ``STS.gs.<sub>.txt`` (§3.2)."""
    input_path, gs_path = folder / f"STS.input.{sub}.txt", folder / f"STS.gs.{sub}.txt"
    inputs, golds = _read_lines(input_path), _read_lines(gs_path)
    _check_count(input_path, "pairs", counts[0], len(inputs), check)
    _check_count(gs_path, "lines (one per input pair)", len(inputs), len(golds), True)
    fields = [_fields(line, input_path, n, 2) for n, line in enumerate(inputs, start=1)]
    scores = np.array([_parse_score(g, gs_path, n) for n, g in enumerate(golds, start=1)], dtype=np.float64)
    _check_count(gs_path, "gold scores", counts[1], int(np.count_nonzero(~np.isnan(scores))), check)
    return LabelledPairs(sub, [f[0] for f in fields], [f[1] for f in fields], scores)


def concat_pairs(name: str, parts: Sequence[LabelledPairs]) -> LabelledPairs:
    return LabelledPairs(
        name,
        [s for part in parts for s in part.sentence1],
        [s for part in parts for s in part.sentence2],
        np.concatenate([part.scores for part in parts]) if parts else np.zeros(0),
    )


def load_sts_year(root: str | os.PathLike[str], year: int, *, check_counts: bool = True) -> LabelledPairs:
    """Load every pair of one STS year (2012–2016), unscored pairs included (scores NaN).

    The sub-datasets of :data:`MANIFEST` are concatenated in sorted name order. Only the first two
    tab-separated columns are used (STS16 has four). Lines are split by hand, without quoting.

    Raises:
        BenchmarkDataError: A file is missing, undecodable, misaligned or has unexpected counts.
    """
    if year not in STS_YEARS.values():
        raise ConfigError(f"load_sts_year expects a year in 2012–2016, got {year!r}.")
    task = f"sts{year % 100}"
    folder = Path(root) / task
    subs = sorted(MANIFEST[task])
    return concat_pairs(
        task, [_load_sts_subset(folder, sub, MANIFEST[task][sub], check_counts) for sub in subs]
    )


def load_stsb(
    root: str | os.PathLike[str], split: Literal["train", "dev", "test"], *, check_counts: bool = True
) -> LabelledPairs:
    """Load one STS-B split: columns 5–7 (score, sentence1, sentence2) of ``stsb/sts-<split>.csv``.

    The files are tab-separated despite the name, have no header, and some lines carry extra
    trailing columns, which are ignored.
    """
    if split not in MANIFEST["stsb"]:
        raise ConfigError(f"load_stsb expects split in {tuple(MANIFEST['stsb'])}, got {split!r}.")
    path = Path(root) / "stsb" / f"sts-{split}.csv"
    lines = _read_lines(path)
    _check_count(path, "pairs", MANIFEST["stsb"][split][0], len(lines), check_counts)
    fields = [_fields(line, path, n, 7) for n, line in enumerate(lines, start=1)]
    scores = np.array([_parse_score(f[4], path, n) for n, f in enumerate(fields, start=1)], dtype=np.float64)
    return LabelledPairs(f"stsb-{split}", [f[5] for f in fields], [f[6] for f in fields], scores)


def _read_sick(path: Path, split_column: str | None) -> tuple[list[tuple[int, list[str]]], dict[str, int]]:
    """Return the ``(line number, fields)`` data rows of a SICK file and the needed column indices."""
    lines = _read_lines(path)
    header = lines[0].split("\t") if lines else []
    needed = ["sentence_A", "sentence_B", "relatedness_score"] + ([split_column] if split_column else [])
    missing = [name for name in needed if name not in header]
    if missing:
        raise BenchmarkDataError(
            f"Benchmark loader expects a header with columns {needed} in {path}, got {header[:16]}; "
            f"{FIX_HINT}.",
            path=str(path),
        )
    col = {name: header.index(name) for name in needed}
    width = max(col.values()) + 1
    rows = [(n, _fields(line, path, n, width)) for n, line in enumerate(lines[1:], start=2) if line.strip()]
    return rows, col


def load_sickr(
    root: str | os.PathLike[str], split: Literal["train", "trial", "test"], *, check_counts: bool = True
) -> LabelledPairs:
    """Load one SICK-R split from ``root/sickr`` (§3.1).

    ``SICK_annotated.txt`` (the file Trans-Encoder reads; TEST = 4906 pairs) is preferred when present;
    otherwise the SemEval-2014 release files ``SICK_train.txt``, ``SICK_trial.txt`` and
    ``SICK_test_annotated.txt`` (TEST = 4927 pairs, CRLF line endings) are used.
    """
    if split not in SICK_SEMEVAL_FILES:
        raise ConfigError(f"load_sickr expects split in {tuple(SICK_SEMEVAL_FILES)}, got {split!r}.")
    folder = Path(root) / "sickr"
    annotated = folder / SICK_ANNOTATED
    if annotated.is_file():
        path, expected = annotated, MANIFEST["sickr"][split][0]
        rows, col = _read_sick(path, "SemEval_set")
        rows = [(n, row) for n, row in rows if row[col["SemEval_set"]].strip().upper() == split.upper()]
    else:
        path, expected = folder / SICK_SEMEVAL_FILES[split], SICK_SEMEVAL_MANIFEST[split][0]
        if not path.is_file():
            raise BenchmarkDataError(
                f"Benchmark loader expects {annotated} or {path} for SICK-R {split}, got neither; "
                f"{FIX_HINT}.",
                path=str(path),
            )
        rows, col = _read_sick(path, None)
    _check_count(path, f"{split} pairs", expected, len(rows), check_counts)
    column = col["relatedness_score"]
    scores = np.array([_parse_score(row[column], path, n) for n, row in rows], dtype=np.float64)
    s1, s2 = [row[col["sentence_A"]] for _, row in rows], [row[col["sentence_B"]] for _, row in rows]
    return LabelledPairs(f"sickr-{split}", s1, s2, scores)


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"Benchmarks expect a task in {TASKS}, got {task!r}.")


def load_task(root: str | os.PathLike[str], task: str, *, check_counts: bool = True) -> LabelledPairs:
    """Load the test set of ``task`` with scored pairs only (§3.3; STS12–16: the whole year)."""
    check_task(task)
    if task in STS_YEARS:
        data = load_sts_year(root, STS_YEARS[task], check_counts=check_counts)
    elif task == "stsb":
        data = load_stsb(root, "test", check_counts=check_counts)
    else:
        data = load_sickr(root, "test", check_counts=check_counts)
    return replace(data.scored(), name=task)


def task_files(root: Path, task: str) -> list[Path]:
    """The files a task reads under the data root (SICK-R: the full release if present, else the 3 files)."""
    if task in STS_YEARS:
        return [
            root / task / f"STS.{kind}.{sub}.txt"
            for sub in sorted(MANIFEST[task])
            for kind in ("input", "gs")
        ]
    if task == "stsb":
        return [root / "stsb" / f"sts-{split}.csv" for split in MANIFEST["stsb"]]
    if (root / "sickr" / SICK_ANNOTATED).is_file():
        return [root / "sickr" / SICK_ANNOTATED]
    return [root / "sickr" / name for name in SICK_SEMEVAL_FILES.values()]


def available_tasks(root: str | os.PathLike[str]) -> dict[str, str | None]:
    """Map each task of :data:`TASKS` to None when its files are present, else to the reason why not.

    Only presence is checked (cheap); counts are checked when the task is loaded.
    """
    base = Path(root)
    result: dict[str, str | None] = {}
    for task in TASKS:
        folder = base / task
        if not folder.is_dir():
            result[task] = f"folder {folder} not found"
            continue
        missing = [path.name for path in task_files(base, task) if not path.is_file()]
        result[task] = (
            f"missing {len(missing)} file(s) in {folder}: {', '.join(missing)}" if missing else None
        )
    return result
