"""Is a sentence's embedding independent of the batch it is encoded in? (issue 14: reuse of the start
evaluation's embeddings in the first labelling stage)

Encodes the same sentences three ways with `scoring.encode` (length-sorted batches padded per batch):
alone, mixed with other sentences, and in reverse order; prints how many rows differ bitwise and the
largest difference, and writes JSON. If rows differ, labels built from embeddings computed for
another set (the start evaluation's) would not be byte-identical to the labels the stage computes on
its own, and every downstream stage key (which digests its inputs' bytes) would depend on what else
the run happened to evaluate first.

    python bench/batch_invariance.py --out bench/results/batch-invariance-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trans_encoder_core.benchmarks import load_stsb  # noqa: E402
from trans_encoder_core.encoders import BiEncoder  # noqa: E402
from trans_encoder_core.scoring import encode  # noqa: E402


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, float | int]:
    """Rows that differ bitwise and the largest absolute difference of two embedding matrices."""
    return {"rows_differing": int((a != b).any(axis=1).sum()), "max_abs_diff": float(np.abs(a - b).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="packaged")
    parser.add_argument(
        "--data", default=os.environ.get("TRANS_ENCODER_DATA", str(ROOT.parent / "shared/data/sts"))
    )
    parser.add_argument("--sentences", type=int, default=600)
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    bi = BiEncoder.from_pretrained(args.model, max_seq_length=32)
    test = load_stsb(args.data, "test")
    first = list(dict.fromkeys(test.sentence1))[: args.sentences]
    others = [s for s in dict.fromkeys(test.sentence2) if s not in set(first)][: args.sentences]
    alone = encode(bi, first)
    rows = {
        "mixed_with_others": compare(alone, encode(bi, first + others)[: len(first)]),
        "reversed_order": compare(alone, encode(bi, first[::-1])[::-1]),
    }
    for name, row in rows.items():
        print(
            f"{name:18s} rows differing {row['rows_differing']:4d} / {len(first)}"
            f"  max |diff| {row['max_abs_diff']:.2e}"
        )
    if args.out:
        payload = {
            "model": args.model,
            "sentences": len(first),
            "precision": "fp32",
            "results": rows,
            "command": "python " + " ".join(sys.argv),
        }
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
