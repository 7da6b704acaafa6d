"""Inference batches one at a time on all threads vs side by side, one thread each (runtime.run_batches).

Interleaved in one process on the packaged model, bf16: encoding the distinct sentences of STS12-16 and
STS-B test, and cross-encoder logits of their first pairs at 128 tokens. Also checks that both ways give
bitwise-equal outputs. Usage: python bench/score_streams.py [--rounds 3] [--cross-pairs 6000]
[--out bench/results/score-streams-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TRANS_ENCODER_DATA", "/work/shared/data/sts"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cross-pairs", type=int, default=6000)
    parser.add_argument("--out", default=str(BENCH_DIR / "results" / "score-streams-cpu.json"))
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from trans_encoder_core.benchmarks import load_task
    from trans_encoder_core.encoders import BiEncoder, CrossEncoder
    from trans_encoder_core.runtime import STREAMS_ENV
    from trans_encoder_core.scoring import cross_logits, encode

    first: list[str] = []
    second: list[str] = []
    for task in ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb"):
        data = load_task(args.data, task)
        first += data.sentence1
        second += data.sentence2
    sentences = list(dict.fromkeys(first + second))
    bi = BiEncoder.from_pretrained("packaged")
    cross = CrossEncoder.from_pretrained("packaged", max_length=128)
    a, b = first[: args.cross_pairs], second[: args.cross_pairs]
    jobs = {
        "bi_encode": lambda: encode(bi, sentences, precision="bf16"),
        "cross_logits": lambda: cross_logits(cross, a, b, precision="bf16"),
    }
    seconds: dict[str, dict[str, list[float]]] = {job: {"1": [], "auto": []} for job in jobs}
    equal = {job: True for job in jobs}
    for _ in range(args.rounds):
        for job, run in jobs.items():
            outputs = {}
            for mode in ("1", "auto"):
                if mode == "1":
                    os.environ[STREAMS_ENV] = "1"
                else:
                    os.environ.pop(STREAMS_ENV, None)
                start = time.perf_counter()
                outputs[mode] = run()
                seconds[job][mode].append(round(time.perf_counter() - start, 2))
            equal[job] &= bool(np.array_equal(outputs["1"], outputs["auto"]))
            print(job, seconds[job], "bitwise equal", equal[job], flush=True)
    result = {
        "command": "python bench/score_streams.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": torch.get_num_threads(),
        "sizes": {"sentences": len(sentences), "cross_pairs": len(a)},
        "seconds_one_at_a_time": {job: s["1"] for job, s in seconds.items()},
        "seconds_side_by_side": {job: s["auto"] for job, s in seconds.items()},
        "bitwise_equal": equal,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
