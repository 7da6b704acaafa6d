"""Training step time, padded vs packed and fp32 vs bf16, interleaved in one process.

Both distillation steps (`distillation.train_bi_encoder`: batch 128, 32 tokens; `train_cross_encoder`:
batch 32, 64 tokens, both orders) on the same rows of the STS-B pool with the packaged model. Each
round runs every variant for a few optimiser steps in turn (padded fp32, packed fp32, padded bf16,
packed bf16), so a change of machine load hits all of them; the step time of a variant is the median
over rounds of its steps after the first of each call (the first allocates the optimiser state).
Both wall-clock and process CPU seconds are recorded: with one torch thread on a loaded machine the
CPU seconds are the steadier measure of work (other jobs stretch the wall clock, not our CPU time).
Also records each variant's loss after its first step from the same weights (packed = padded up to
rounding with dropout off; with dropout on they differ by the dropout masks only).

Usage: python bench/packing_speed.py [--rounds 2] [--bi-steps 4] [--cross-steps 6] [--threads 1]
           [--row-tokens 64] [--variants ...] [--out bench/results/packing-speed-cpu.json]

`--variants packed_bf16 packed_bf16_fast` compares fast dropout + fused AdamW with torch's dropout and
AdamW on the same packed bf16 steps (speed-ups are against padded_fp32 when it runs, else against the
first variant named).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

# name -> (layout, precision, fast): `fast` = fit.fast_dropout + fit.fused_optimizer
VARIANTS = {
    "padded_fp32": ("padded", "fp32", False),
    "packed_fp32": ("packed", "fp32", False),
    "padded_bf16": ("padded", "bf16", False),
    "packed_bf16": ("packed", "bf16", False),
    "packed_bf16_fast": ("packed", "bf16", True),
}
DEFAULT_VARIANTS = ["padded_fp32", "packed_fp32", "padded_bf16", "packed_bf16"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TRANS_ENCODER_DATA", "/work/shared/data/sts"))
    parser.add_argument("--model", default="packaged")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bi-steps", type=int, default=4)
    parser.add_argument("--cross-steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--row-tokens", type=int, default=None, help="packing row length (default: core's)")
    parser.add_argument("--only", nargs="*", default=["train_bi", "train_cross"])
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--out", default=str(BENCH_DIR / "results" / "packing-speed-cpu.json"))
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from trans_encoder_core import packing
    from trans_encoder_core.config import (
        BiEncoderConfig,
        CrossEncoderConfig,
        bi_fit_defaults,
        cross_fit_defaults,
    )
    from trans_encoder_core.distillation import train_bi_encoder, train_cross_encoder
    from trans_encoder_core.encoders import BiEncoder, CrossEncoder
    from trans_encoder_core.pool import training_pool
    from trans_encoder_core.runtime import cpu_has_native_bf16

    torch.set_num_threads(args.threads)
    if args.row_tokens:
        packing.ROW_TOKENS = args.row_tokens
    table, _ = training_pool(args.data, tasks=("stsb",))
    a, b = table["sentence1"].to_pylist(), table["sentence2"].to_pylist()
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 1, len(a)).astype(np.float32)
    torch.manual_seed(0)
    models: dict[str, Any] = {
        "train_bi": BiEncoder.from_pretrained(args.model, max_seq_length=32),
        "train_cross": CrossEncoder.from_pretrained(args.model, max_length=64),
    }
    start = {k: {n: v.clone() for n, v in m.state_dict().items()} for k, m in models.items()}
    steps = {"train_bi": args.bi_steps, "train_cross": args.cross_steps}
    per_step = {"train_bi": 128, "train_cross": 16}  # cross: 16 pairs x both orders = batch 32
    times: dict[str, dict[str, list[float]]] = {k: {} for k in args.only}
    cpu: dict[str, dict[str, list[float]]] = {k: {} for k in args.only}
    first_loss: dict[str, dict[str, float]] = {k: {} for k in args.only}
    loads = []
    for _ in range(args.rounds):
        for name in args.only:
            model = models[name]
            n = steps[name] * per_step[name]
            for variant in args.variants:
                layout, precision, fast = VARIANTS[variant]
                model.load_state_dict(start[name])
                model.packing = layout == "packed"
                fit = {"epochs": 1, "eval_steps": 0, "precision": precision}
                fit |= {"fast_dropout": fast, "fused_optimizer": fast}
                stamps: list[tuple[float, float]] = []
                progress = lambda _: stamps.append((time.perf_counter(), time.process_time()))  # noqa: E731
                loads.append(os.getloadavg()[0])
                if name == "train_bi":
                    cfg = BiEncoderConfig(max_seq_length=32, fit=bi_fit_defaults(**fit))
                    res = train_bi_encoder(model, a[:n], b[:n], labels[:n], cfg, progress=progress)
                else:
                    cfg = CrossEncoderConfig(max_length=64, fit=cross_fit_defaults(**fit))
                    res = train_cross_encoder(model, a[:n], b[:n], labels[:n], cfg, progress=progress)
                wall, proc = np.diff(np.array(stamps), axis=0).T
                times[name].setdefault(variant, []).extend(wall.tolist())
                cpu[name].setdefault(variant, []).extend(proc.tolist())
                first_loss[name][variant] = res.losses[0]
                print(
                    name, variant, "wall", wall.round(2).tolist(), "cpu", proc.round(2).tolist(), flush=True
                )
    summary: dict[str, Any] = {}
    for name, per in times.items():
        med = {v: statistics.median(t) for v, t in per.items()}
        med_cpu = {v: statistics.median(t) for v, t in cpu[name].items()}
        base = "padded_fp32" if "padded_fp32" in med else args.variants[0]
        summary[name] = {
            "baseline": base,
            "median_step_cpu_s": {v: round(t, 3) for v, t in med_cpu.items()},
            "cpu_speedup_vs_baseline": {v: round(med_cpu[base] / t, 2) for v, t in med_cpu.items()},
            "median_step_wall_s": {v: round(t, 3) for v, t in med.items()},
            "wall_speedup_vs_baseline": {v: round(med[base] / t, 2) for v, t in med.items()},
            "steps_timed": {v: len(t) for v, t in per.items()},
            "first_step_loss": first_loss[name],
        }
    result = {
        "command": "python bench/packing_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "note": "shared 2-core machine under load from other jobs: timings are noisy",
        "threads": args.threads,
        "row_tokens": packing.ROW_TOKENS,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "load_avg_1min": {"min": min(loads), "max": max(loads)},
        "results": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
