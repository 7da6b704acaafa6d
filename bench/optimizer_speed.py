"""One AdamW step on a real model's parameters: torch's CPU loop, BlockedAdamW, torch's fused kernel.

The parameters are those of the packaged MiniLM as a cross-encoder (22.7 M, the word embedding
11.7 M of them), in the two groups training uses (weight decay 0.01 / none); the gradients are random
and the same for every variant. Each variant runs `--steps` steps after two warm-up steps, per torch
thread count; the table gives the median step, and whether the variant's parameters and moments
after the last step equal torch's loop bit for bit (fused: the largest difference instead, since it
rounds differently and is an option). Prints a table and writes JSON.

    python bench/optimizer_speed.py --out bench/results/optimizer-speed-cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ("torch", "blocked", "fused")


def _optimizer(variant: str, groups: list[dict[str, Any]]) -> Any:
    import torch

    from trans_encoder_core.blocked_adamw import BlockedAdamW

    if variant == "blocked":
        return BlockedAdamW(groups, lr=2e-5, eps=1e-6)
    return torch.optim.AdamW(groups, lr=2e-5, eps=1e-6, fused=True if variant == "fused" else None)


def measure(model: str, variant: str, threads: int, steps: int) -> tuple[dict[str, Any], list[Any]]:
    """Median step seconds of `variant` on `threads` threads, and the final parameters and moments."""
    import torch

    from trans_encoder_core.allocator import keep_heap
    from trans_encoder_core.encoders import CrossEncoder
    from trans_encoder_core.training import _NO_DECAY

    keep_heap()  # as training.fit does: torch's loop then reuses its temporaries' memory
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = CrossEncoder.from_pretrained(model, max_length=64)
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        (no_decay if any(tag in name for tag in _NO_DECAY) else decay).append(param)
    params = decay + no_decay
    optimizer = _optimizer(
        variant, [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    )
    seconds = []
    for step in range(steps + 2):
        gen = torch.Generator().manual_seed(step)
        for param in params:
            param.grad = torch.randn(param.shape, generator=gen) * 1e-3
        start = time.perf_counter()
        optimizer.step()
        if step >= 2:
            seconds.append(time.perf_counter() - start)
    final = [
        t.detach().clone()
        for p in params
        for t in (p, optimizer.state[p]["exp_avg"], optimizer.state[p]["exp_avg_sq"])
    ]
    row = {
        "variant": variant,
        "threads": threads,
        "parameters": sum(p.numel() for p in params),
        "tensors": len(params),
        "median_step_ms": 1e3 * statistics.median(seconds),
        "step_ms": [1e3 * s for s in seconds],
    }
    return row, final


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="packaged")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from bench.speed_report import machine_info, versions

    rows = []
    for threads in args.threads:
        reference = None
        for variant in VARIANTS:
            row, final = measure(args.model, variant, threads, args.steps)
            if variant == "torch":
                reference = final
                row["bitwise_equal_to_torch"] = True
            else:
                pairs = list(zip(final, reference))
                row["bitwise_equal_to_torch"] = all(bool((a == b).all()) for a, b in pairs)
                row["max_abs_diff"] = max(float((a - b).abs().max()) for a, b in pairs)
            rows.append(row)
    print("| threads | variant | median step (ms) | vs torch | bit-equal to torch |")
    print("|---:|---|---:|---:|---|")
    base = {r["threads"]: r["median_step_ms"] for r in rows if r["variant"] == "torch"}
    for r in rows:
        ratio = base[r["threads"]] / r["median_step_ms"]
        equal = "yes" if r["bitwise_equal_to_torch"] else f"no (max diff {r['max_abs_diff']:.1e})"
        print(f"| {r['threads']} | {r['variant']} | {r['median_step_ms']:.1f} | {ratio:.2f}x | {equal} |")
    if args.out:
        out = {
            "model": args.model,
            "steps": args.steps,
            "rows": rows,
            "machine": machine_info(),
            "versions": versions(),
        }
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
