"""Stage `ingest_pairs`: a user pair file, the STS benchmark pool or a binary task's pool (MRPC, QNLI,
QQP: train + dev + test pairs, paper §1.7) → the normalised pair table."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import fsspec

from tasks import keys
from tasks.artifacts import PAIRS_FILE, data_digest, write_table
from tasks.stages import pipeline_task, run_stage
from tasks.store import Store, digest_json
from trans_encoder_core.benchmarks import TASKS
from trans_encoder_core.binary_tasks import binary_pool, load_binary_task
from trans_encoder_core.errors import InputDataError
from trans_encoder_core.pair_files import read_pairs
from trans_encoder_core.pool import subsample, training_pool

POOL_TASKS = {"transductive": TASKS, "inductive": TASKS, "stsb": ("stsb",)}


def read_source_bytes(uri: str) -> bytes:
    """Bytes of a user file given as a path or any fsspec URL, with a clear error if it is missing."""
    try:
        with fsspec.open(uri, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise InputDataError(
            f"Pair file {uri} does not exist; check the path or URL passed as --pairs.", source=uri
        ) from exc
    except IsADirectoryError as exc:
        raise InputDataError(f"Pair file {uri} is a folder; pass a file.", source=uri) from exc


def subsample_seed(source: dict[str, Any]) -> int | None:
    """The seed only matters when the pool is subsampled; without it the pool (and its key) is seed-free."""
    return source["seed"] if source.get("max_pairs") is not None else None


def _ingest_file(store: Store, source: dict[str, Any]) -> dict[str, Any]:
    data = read_source_bytes(source["uri"])
    fields = ("format", "sentence1_column", "sentence2_column", "on_invalid", "max_pairs")
    options: dict[str, Any] = {k: source[k] for k in fields}
    options["seed"] = subsample_seed(source)

    def compute(folder: Path, key: str) -> dict[str, Any]:
        import io

        result = read_pairs(
            io.BytesIO(data),
            name=source["uri"],
            format=options["format"],
            sentence1_column=options["sentence1_column"],
            sentence2_column=options["sentence2_column"],
            on_invalid=options["on_invalid"],
        )
        table = subsample(result.table, options["max_pairs"], options["seed"])
        write_table(table, folder, PAIRS_FILE, {"stage": "ingest_pairs", "source": source["uri"], "key": key})
        return {
            "n_pairs": table.num_rows,
            "n_rows": result.n_rows,
            "n_duplicates": result.n_duplicates,
            "n_dropped": result.n_dropped,
            "source": source["uri"],
        }

    key = keys.ingest_file(options, hashlib.sha256(data).hexdigest())
    return run_stage(store, "ingest_pairs", 0, *key, compute)


def _ingest_benchmark(store: Store, source: dict[str, Any]) -> dict[str, Any]:
    root, pool = source["data"], source["pool"]
    tasks = POOL_TASKS[pool]
    options = {"pool": pool, "max_pairs": source["max_pairs"], "seed": subsample_seed(source)}

    def compute(folder: Path, key: str) -> dict[str, Any]:
        mode = "inductive" if pool == "inductive" else "transductive"
        table, stats = training_pool(root, mode=mode, tasks=tasks)
        table = subsample(table, options["max_pairs"], options["seed"])
        write_table(table, folder, PAIRS_FILE, {"stage": "ingest_pairs", "pool": pool, "key": key})
        return {"n_pairs": table.num_rows, "pool_stats": stats}

    key = keys.ingest_benchmark(options, data_digest(root, tasks))
    return run_stage(store, "ingest_pairs", 0, *key, compute)


def _ingest_binary(store: Store, source: dict[str, Any]) -> dict[str, Any]:
    root, task = source["data"], source["pool"]
    options = {"pool": task, "max_pairs": source["max_pairs"], "seed": subsample_seed(source)}
    splits = load_binary_task(root, task)  # small files: read here for their digests, reused below
    files = digest_json(
        sorted(Path(path).relative_to(root).as_posix() + ":" + sha for path, sha in splits.files.items())
    )

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table, stats = binary_pool(splits, mode="transductive")
        table = subsample(table, options["max_pairs"], options["seed"])
        write_table(table, folder, PAIRS_FILE, {"stage": "ingest_pairs", "pool": task, "key": key})
        stats["files"] = {Path(p).relative_to(root).as_posix(): sha for p, sha in stats["files"].items()}
        return {"n_pairs": table.num_rows, "pool_stats": stats}

    return run_stage(store, "ingest_pairs", 0, *keys.ingest_binary(options, files), compute)


@pipeline_task
def ingest_pairs(store_root: str, source: dict[str, Any]) -> dict[str, Any]:
    """Normalise, deduplicate and store the unlabeled pair pool (algorithm.md §1.3)."""
    store = Store(store_root)
    if source["kind"] == "file":
        return _ingest_file(store, source)
    if source["kind"] == "binary":
        return _ingest_binary(store, source)
    return _ingest_benchmark(store, source)
