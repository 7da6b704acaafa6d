"""Real-token fraction of the training and scoring batches, padded and packed (no model forward).

For one epoch of each training run (the same batches `training.fit` draws: `epoch_order`, the
official batch sizes and lengths) and for bi scoring of the pool (length-sorted batches), counts
real tokens, the positions a padded batch feeds the model (batch × longest) and the positions of
packed rows (`packing.plan_rows`) for several row lengths, plus the attention scores each computes
(padded: B·L²; packed: R·C²). Pure counting: the numbers do not depend on the machine's load.

Usage: python bench/token_fraction.py [--data DIR] [--model packaged] [--tasks stsb ...]
           [--out bench/results/token-fraction.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

ROW_LENGTHS = (64, 128, 256)


def _chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def count(lengths: np.ndarray, batches: list[np.ndarray]) -> dict[str, object]:
    """Real, padded and packed token positions and attention scores of `batches`."""
    from trans_encoder_core.packing import plan_rows

    real = int(sum(int(lengths[b].sum()) for b in batches))
    padded = int(sum(len(b) * int(lengths[b].max()) for b in batches))
    scores = int(sum(len(b) * int(lengths[b].max()) ** 2 for b in batches))
    out: dict[str, object] = {
        "batches": len(batches),
        "real_tokens": real,
        "padded_positions": padded,
        "real_fraction_padded": round(real / padded, 4),
        "padded_attention_scores": scores,
        "packed": {},
    }
    for row_tokens in ROW_LENGTHS:
        positions = att = rows = 0
        for b in batches:
            row, _, capacity = plan_rows(lengths[b], row_tokens)
            r = int(row.max()) + 1
            rows += r
            positions += r * capacity
            att += r * capacity**2
        out["packed"][str(row_tokens)] = {
            "rows_per_batch": round(rows / len(batches), 2),
            "positions": positions,
            "real_fraction": round(real / positions, 4),
            "attention_scores_vs_padded": round(att / scores, 3),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TRANS_ENCODER_DATA", "/work/shared/data/sts"))
    parser.add_argument("--model", default="packaged")
    parser.add_argument("--tasks", nargs="*", default=None, help="pool tasks (default: the whole pool)")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--out", default=str(BENCH_DIR / "results" / "token-fraction.json"))
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from trans_encoder_core.batching import (
        length_sorted_batches,
        tokenize_pairs,
        tokenize_texts,
        unique_index,
    )
    from trans_encoder_core.benchmarks import TASKS
    from trans_encoder_core.distillation import cross_training_examples
    from trans_encoder_core.encoders import resolve_model
    from trans_encoder_core.pool import training_pool
    from trans_encoder_core.training import epoch_order

    table, stats = training_pool(args.data, tasks=tuple(args.tasks or TASKS))
    a, b = table["sentence1"].to_pylist(), table["sentence2"].to_pylist()
    tok = AutoTokenizer.from_pretrained(resolve_model(args.model))
    result: dict[str, object] = {
        "model": args.model,
        "pool": {"tasks": list(args.tasks or TASKS), "pairs": stats["n_pairs"], "missing": stats["missing"]},
        "command": "python bench/token_fraction.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }

    # cross->bi: batch 128 pairs, one forward over both columns (256 sentences), 32 tokens
    texts, index = unique_index(a + b)
    lengths = tokenize_texts(tok, texts, 32).lengths()
    n = len(a)
    steps = _chunks(epoch_order(n, args.seed, 0), 128)
    result["train_bi"] = count(lengths, [np.concatenate([index[s], index[s + n]]) for s in steps])
    result["train_bi"]["setting"] = "batch 128 pairs = 256 sentences, max 32 tokens, epoch 0 order"
    result["score_bi"] = count(lengths, length_sorted_batches(lengths, 128))
    result["score_bi"]["setting"] = "distinct sentences, length-sorted batches of 128, max 32 tokens"

    # bi->cross: batch 32 pairs from both orders, 64 tokens
    x, y, _ = cross_training_examples(a, b, np.zeros(n), both_orders=True, clamp=False)
    pair_lengths = tokenize_pairs(tok, x, y, 64).lengths()
    steps = _chunks(epoch_order(len(x), args.seed, 0), 32)
    result["train_cross"] = count(pair_lengths, steps)
    result["train_cross"]["setting"] = "batch 32 pairs (both orders), max 64 tokens, epoch 0 order"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name in ("train_bi", "train_cross", "score_bi"):
        r = result[name]
        packed = ", ".join(f"C={k}: {v['real_fraction']:.3f}" for k, v in r["packed"].items())
        print(f"{name}: real fraction padded {r['real_fraction_padded']:.3f}; packed {packed}")


if __name__ == "__main__":
    main()
