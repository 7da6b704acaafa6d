"""Dev evaluation inside a fit, fp32 against bf16 autocast (`fit.eval_autocast`): time and score.

Scores STS-B dev (1,500 pairs) with the packaged MiniLM as a bi-encoder (32 tokens) and as a
cross-encoder (128 tokens, a fresh head: only the time matters there), `--repeats` times per
precision, alternating, each in this process; prints a table and writes JSON.

    python bench/eval_precision.py --out bench/results/eval-precision-cpu.json

The STS folder is $TRANS_ENCODER_DATA (default ../shared/data/sts).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="packaged")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    from trans_encoder_core.benchmarks import load_stsb
    from trans_encoder_core.encoders import BiEncoder, CrossEncoder
    from trans_encoder_core.evaluation import bi_scorer, cross_scorer, dev_evaluator
    from trans_encoder_core.runtime import autocast

    root = os.environ.get("TRANS_ENCODER_DATA") or str(ROOT.parent / "shared/data/sts")
    dev = load_stsb(root, "dev")
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    models = {
        "bi": dev_evaluator(bi_scorer(BiEncoder.from_pretrained(args.model, max_seq_length=32)), dev),
        "cross": dev_evaluator(
            cross_scorer(CrossEncoder.from_pretrained(args.model, max_length=64), max_length=128), dev
        ),
    }
    rows = []
    for kind, evaluate in models.items():
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        scores: dict[str, float] = {}
        for _ in range(args.repeats):
            for precision in ("fp32", "bf16"):
                started = time.perf_counter()
                with torch.inference_mode(), autocast(precision, cpu):
                    scores[precision] = float(evaluate())
                times[precision].append(time.perf_counter() - started)
        fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        rows.append(
            {
                "model": kind,
                "fp32_s": round(fp32, 2),
                "bf16_s": round(bf16, 2),
                "speedup": round(fp32 / bf16, 2),
                "dev_fp32": scores["fp32"],
                "dev_bf16": scores["bf16"],
                "times": times,
            }
        )
    print(f"{'model':<6}{'fp32 s':>9}{'bf16 s':>9}{'speedup':>9}{'dev fp32':>10}{'dev bf16':>10}")
    for r in rows:
        print(
            f"{r['model']:<6}{r['fp32_s']:>9.2f}{r['bf16_s']:>9.2f}{r['speedup']:>9.2f}"
            f"{r['dev_fp32']:>10.3f}{r['dev_bf16']:>10.3f}"
        )
    if args.out:
        result = {
            "command": " ".join(["python", "bench/eval_precision.py", *sys.argv[1:]]),
            "threads": torch.get_num_threads(),
            "load_average_at_start": os.getloadavg(),
            "rows": rows,
        }
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
