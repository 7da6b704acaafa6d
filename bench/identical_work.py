"""The identical-work run of issue 14: one cycle of the paper preset on STS-B test's unique pairs.

The official code (amzn/trans-encoder, 1 cycle, official hyperparameters, the packaged MiniLM as start
and cross init, the 1,378 unique STS-B test pairs as the pool, selection on STS-B dev) took 611 s wall,
1,178 s user CPU and 3.81 GB peak RSS on these 2-core machines (../shared/docs/baselines.md, measured
2026-12-01), and scored STS-B test 81.80 -> cross 30.54 -> bi 74.40. This script runs the same work
through `trans-encoder self-distill --preset paper` in a fresh store, once per variant, each in its own
process under /usr/bin/time, and prints and writes wall time, CPU seconds, peak RSS and Spearman.

    python bench/identical_work.py --variants fp32 auto auto+packing --out bench/results/identical-work.json

Variants: `fp32` (both fits in fp32: the official code's arithmetic on a CPU), `auto` (the default
precision: bf16 autocast on a CPU with native bf16), `+packing` (padding-free batches in both fits),
`+fast` (fast dropout masks and the fused AdamW kernel in both fits: the same distribution and update,
other masks and rounding), `+bf16-scoring` (labelling, final and in-fit dev evaluations in the fits'
precision too: changes the numbers by bf16 rounding, so it is opt-in), `+glibc-heap` (the same run
with TRANS_ENCODER_KEEP_HEAP=0: glibc's default allocator behaviour, the A/B of
trans_encoder_core/allocator.py). Each run also records system CPU seconds and minor page faults.

The official code's figures come from another machine of this kind; the 2048x2048 matmul rate
printed first (and written to the JSON) says how this machine compares (baselines.md: ~100 GFLOP/s
fp32, ~400 bf16 there), and the `fp32` variant, which took 620 s there against the official 611 s,
is the stand-in for the official code's time on this machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OFFICIAL = {
    "wall_s": 611.0,
    "user_cpu_s": 1178.0,
    "peak_rss_gb": 3.81,
    "stsb": {"start": 81.80, "cross": 30.54, "bi": 74.40},
}


def _both(*settings: str) -> list[str]:
    """`--set` arguments applying each `field=value` to the cross and the bi config."""
    return [arg for field in settings for plm in ("cross", "bi") for arg in ("--set", f"plms.{plm}.{field}")]


FP32 = _both("fit.precision=fp32")
PACKING = _both("fit.packing=true")
FAST = _both("fit.fast_dropout=true", "fit.fused_optimizer=true")
BF16_SCORING = _both("fit.eval_autocast=true", "score_precision=auto")
VARIANTS = {
    "fp32": FP32,
    "auto": [],
    "auto+packing": PACKING,
    "auto+packing+bf16-scoring": PACKING + BF16_SCORING,
    "auto+packing+fast": PACKING + FAST,
    "auto+packing+fast+bf16-scoring": PACKING + FAST + BF16_SCORING,
    "fp32+packing": FP32 + PACKING,
    # the same as the variant before `+glibc-heap`, with glibc's default allocator behaviour
    # (trans_encoder_core/allocator.py off): the A/B of keeping the heap between steps
    "auto+packing+fast+bf16-scoring+glibc-heap": PACKING + FAST + BF16_SCORING,
}
VARIANT_ENV = {"auto+packing+fast+bf16-scoring+glibc-heap": {"TRANS_ENCODER_KEEP_HEAP": "0"}}


def write_pool(data: Path, out: Path) -> int:
    """STS-B test's pairs, deduplicated on the exact (s1, s2) strings as the official code does."""
    sys.path.insert(0, str(ROOT))
    from trans_encoder_core.benchmarks import load_stsb

    test = load_stsb(data, "test")
    seen = dict.fromkeys(zip(test.sentence1, test.sentence2, strict=True))
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sentence1", "sentence2"])
        writer.writerows(seen)
    return len(seen)


def _time_field(text: str, name: str) -> float:
    match = re.search(rf"{re.escape(name)}: ([0-9.:]+)", text)
    if match is None:
        raise RuntimeError(f"/usr/bin/time printed no '{name}'")
    value = match.group(1)
    if ":" in value:  # h:mm:ss or m:ss.ss
        parts = [float(p) for p in value.split(":")]
        return sum(p * 60**i for i, p in enumerate(reversed(parts)))
    return float(value)


def run_variant(name: str, pairs: Path, data: Path, work: Path, seed: int) -> dict[str, Any]:
    store, summary = work / f"store-{name}", work / f"summary-{name}.json"
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "flows.cli", "self-distill", "--preset", "paper"]
    cmd += ["--pairs", str(pairs), "--data", str(data), "--store", str(store), "--cycles", "1"]
    run_name = "identical-" + name.replace("+", "-")
    cmd += ["--seed", str(seed), "--run-name", run_name, "--summary", str(summary)]
    cmd += ["--set", 'eval_tasks=["stsb"]', *VARIANTS[name]]
    env = {**os.environ, "PREFECT_HOME": str(work / f"prefect-{name}"), "PYTHONUNBUFFERED": "1"}
    env |= VARIANT_ENV.get(name, {})
    started = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    report = json.loads(summary.read_text())
    (model,) = report["models"].values()
    stages = {s["name"]: s["seconds"] for s in report["stages"] if s["name"] in ("train_cross", "train_bi")}
    first = min(s["started"] for s in report["stages"])
    return {
        "variant": name,
        "command": " ".join(cmd[2:]),
        "started": started,
        "wall_s": _time_field(proc.stderr, "Elapsed (wall clock) time (h:mm:ss or m:ss)"),
        "user_cpu_s": _time_field(proc.stderr, "User time (seconds)"),
        "system_cpu_s": _time_field(proc.stderr, "System time (seconds)"),
        "minor_page_faults": int(_time_field(proc.stderr, "Minor (reclaiming a frame) page faults")),
        "peak_rss_gb": _time_field(proc.stderr, "Maximum resident set size (kbytes)") / 1024**2,
        "stsb": {
            "start": model["start"]["bi"]["test"].get("stsb"),
            "cross": model["best"]["cross"]["test"].get("stsb"),
            "bi": model["best"]["bi"]["test"].get("stsb"),
        },
        "stage_seconds": stages,
        # every stage in run order, and the seconds from process start to the first stage (imports,
        # the ephemeral Prefect server, config and model checks)
        "stages": [{k: s[k] for k in ("name", "cycle", "seconds")} for s in report["stages"]],
        "startup_s": round(first - started, 2),
    }


def matmul_gflops(threads: int = 2, size: int = 2048) -> dict[str, Any]:
    """2048x2048 matmul throughput with 2 threads, fp32 and bf16: how this machine compares with the
    one the official figures were measured on (../shared/docs/baselines.md: ~100 and ~400 GFLOP/s).
    Where bf16 is emulated (no AVX512-BF16 or AMX; ~100x slower) it is timed on 512x512 matrices,
    which take about a second there instead of many minutes."""
    import torch

    sys.path.insert(0, str(ROOT))
    from trans_encoder_core.runtime import cpu_has_native_bf16

    torch.set_num_threads(threads)
    native = cpu_has_native_bf16()
    out: dict[str, Any] = {"bf16_native": native, "bf16_size": size if native else 512}
    for name, dtype, n_size, repeats in (
        ("fp32", torch.float32, size, 10),
        ("bf16", torch.bfloat16, out["bf16_size"], 10 if native else 3),
    ):
        a, b = torch.randn(n_size, n_size, dtype=dtype), torch.randn(n_size, n_size, dtype=dtype)
        a @ b
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        out[name] = round(2 * n_size**3 * repeats / (time.perf_counter() - t) / 1e9, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variants", nargs="+", default=["fp32", "auto", "auto+packing"], choices=list(VARIANTS)
    )
    parser.add_argument(
        "--data", default=os.environ.get("TRANS_ENCODER_DATA", str(ROOT.parent / "shared/data/sts"))
    )
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    commit = head.stdout.strip()
    load_average = os.getloadavg()
    gflops = matmul_gflops()
    bf16 = "native" if gflops["bf16_native"] else f"emulated, {gflops['bf16_size']}x{gflops['bf16_size']}"
    print(
        f"2048x2048 matmul, 2 threads: {gflops['fp32']} GFLOP/s fp32, {gflops['bf16']} bf16 ({bf16})",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="te-identical-") as tmp:
        work = Path(tmp)
        n_pairs = write_pool(Path(args.data), work / "stsb-test-pairs.csv")
        for name in args.variants:
            rows.append(run_variant(name, work / "stsb-test-pairs.csv", Path(args.data), work, args.seed))
            r = rows[-1]
            print(
                f"{name:<14} wall {r['wall_s']:7.1f} s ({OFFICIAL['wall_s'] / r['wall_s']:.2f}x official)  "
                f"cpu {r['user_cpu_s']:7.1f} s  sys {r['system_cpu_s']:5.1f} s  "
                f"peak {r['peak_rss_gb']:.2f} GB  STS-B "
                f"{r['stsb']['start']:.2f} -> cross {r['stsb']['cross']:.2f} -> bi {r['stsb']['bi']:.2f}  "
                f"startup {r['startup_s']:.1f} s",
                flush=True,
            )
    from trans_encoder_core.machine import machine_info  # importable: matmul_gflops put ROOT on the path

    result = {
        "pairs": n_pairs,
        "official": OFFICIAL,
        "runs": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            **machine_info(),  # family and model tell apart CPUs that all say "AMD EPYC"
            "matmul_gflops": gflops,
        },
        "commit": commit,  # read before the runs: the code they ran
        "load_average_at_start": load_average,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
