"""The measurement suite of bench/speed.py: prepare folders and tables, run both sides, compare."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from speed_common import IMPLS, quiet
from speed_data import build_tables, prepare_models, teacher_labels
from speed_harness import run_measurement
from speed_report import compare
from speed_tokens import padded_tokens

_STEPS = {"train_cross": "cross_steps", "train_bi": "bi_steps"}


def measurement_spec(base: dict[str, Any], name: str, sizes: dict[str, Any]) -> dict[str, Any]:
    """The child spec of measurement `name`: the shared settings plus its name and training steps."""
    spec = {**base, "name": name, "nodrop": name.endswith("_nodrop")}
    if name.startswith("train"):
        spec["steps"] = (
            sizes["match_steps"] if spec["nodrop"] else sizes[_STEPS[name.removesuffix("_nodrop")]]
        )
    return spec


def _both_sides(spec: dict[str, Any], in_process: bool, label: str | None) -> dict[str, Any]:
    results = {}
    for impl in IMPLS:
        tag = f"[{label}] " if label else ""
        print(f"{tag}{spec['name']} / {impl} ...", file=sys.stderr, flush=True)
        side = {**spec, "impl": impl}
        if impl == "st" and spec.get("their_precision"):
            side["precision"] = spec["their_precision"]
        results[impl] = run_measurement(side, in_process)
    return results


def run_suite(
    *,
    model: str,
    device: str,
    precision: str,
    threads: int | None,
    sizes: dict[str, Any],
    only: list[str],
    in_process: bool,
    seed: int,
    data_root: str | None,
    work: Path,
    label: str | None = None,
    repeat: int = 1,
    packing: bool = False,
    fast: bool = False,
    their_precision: str | None = None,
) -> dict[str, Any]:
    """Prepare folders and tables in `work`, run every measurement for both sides, compare;
    `their_precision` (None: `precision`) runs sentence-transformers in another precision."""
    import torch

    quiet()
    if threads:
        torch.set_num_threads(threads)
    folders = prepare_models(model, work / "models", seed)
    tables, stats = build_tables(data_root, sizes)
    result_dir = work / "results"
    result_dir.mkdir(parents=True, exist_ok=True)
    if any(name.startswith("train") for name in only):
        prec = precision if precision != "auto" else "fp32"
        tables["train"]["labels"] = teacher_labels(folders, tables["train"], device, prec)
    stats["padded_tokens"] = padded_tokens(folders, tables, sizes, seed)
    data_path = work / "tables.json"
    data_path.write_text(json.dumps(tables))
    base = {
        "folders": folders,
        "device": device,
        "precision": precision,
        "packing": packing,
        "fast": fast,
        "their_precision": their_precision,
        "threads": threads,
        "seed": seed,
        "warmup_rows": sizes["warmup_rows"],
        "repeat": repeat,
        "data": str(data_path),
        "result_dir": str(result_dir),
    }
    rows, raw = [], {}
    for name in only:
        try:
            raw[name] = _both_sides(measurement_spec(base, name, sizes), in_process, label)
            rows.append(compare(name, raw[name]["ours"], raw[name]["st"], stats))
        except RuntimeError as exc:
            print(str(exc), file=sys.stderr)
            rows.append({"measurement": name, "error": str(exc)})
    for result in raw.values():  # losses stay in the JSON; the score arrays are only compared
        for side in result.values():
            side.pop("scores_path", None)
    return {"tables": stats, "rows": rows, "raw": raw, "model_folders": folders}
