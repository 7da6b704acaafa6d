"""Search for a `quick` recipe that improves the packaged model on CPU, over several seeds.

One cycle on the STS-B pool (train+dev+test pairs, no labels), selection on STS-B dev. Prints one JSON
line per seed with dev/test Spearman of the cross-encoder and of bi-encoders trained on different
label sources. Usage: python bench/recipe_search.py --seeds 2021 1 2 [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import transformers

from trans_encoder_core.benchmarks import load_stsb
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig, bi_fit_defaults, cross_fit_defaults
from trans_encoder_core.distillation import train_bi_encoder, train_cross_encoder
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.evaluation import bi_scorer, cross_scorer, dev_evaluator, evaluate_scorer
from trans_encoder_core.pairs import make_pairs_table
from trans_encoder_core.scoring import bi_scores, cross_scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[2021, 1, 2])
    parser.add_argument("--cross-lr", type=float, default=1e-4)
    parser.add_argument("--bi-lr", type=float, default=2e-5)
    parser.add_argument("--mix", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    root = os.environ.get("TRANS_ENCODER_DATA", "../shared/data/sts")
    splits = {s: load_stsb(root, s) for s in ("train", "dev", "test")}
    table, _ = make_pairs_table(
        sum((d.sentence1 for d in splits.values()), []), sum((d.sentence2 for d in splits.values()), [])
    )
    s1, s2 = table["sentence1"].to_pylist(), table["sentence2"].to_pylist()
    tests = {"stsb_dev": splits["dev"], "stsb": splits["test"]}
    start = BiEncoder.from_pretrained("packaged")
    teacher = bi_scores(start, s1, s2)
    for seed in args.seeds:
        t0 = time.time()
        row: dict[str, object] = {
            "seed": seed,
            "pool": len(s1),
            "cross_lr": args.cross_lr,
            "bi_lr": args.bi_lr,
        }
        cross = CrossEncoder.from_pretrained("packaged")
        ccfg = CrossEncoderConfig(
            fit=cross_fit_defaults(learning_rate=args.cross_lr, eval_steps=100, seed=seed)
        )
        res = train_cross_encoder(
            cross, s1, s2, teacher, ccfg, evaluate=dev_evaluator(cross_scorer(cross), splits["dev"])
        )
        row["cross"] = evaluate_scorer(cross_scorer(cross), tests) | {"best_step": res.best_step}
        labels = cross_scores(cross, s1, s2, symmetric=True)
        row["cross_sym_as_predictor_test"] = float(
            evaluate_scorer(lambda a, b: cross_scores(cross, a, b, symmetric=True), {"t": splits["test"]})[
                "t"
            ]
        )
        for mix in args.mix:
            target = (1 - mix) * labels + mix * teacher
            bi = BiEncoder.from_pretrained("packaged")
            bcfg = BiEncoderConfig(
                fit=bi_fit_defaults(learning_rate=args.bi_lr, epochs=1, eval_steps=20, seed=seed)
            )
            res = train_bi_encoder(
                bi, s1, s2, target, bcfg, evaluate=dev_evaluator(bi_scorer(bi), splits["dev"])
            )
            row[f"bi_mix{mix}"] = evaluate_scorer(bi_scorer(bi), tests) | {"best_step": res.best_step}
        row["seconds"] = round(time.time() - t0, 1)
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(line + "\n")


if __name__ == "__main__":
    main()
