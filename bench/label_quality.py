"""How good are a run's pseudo-labels? Spearman x 100 of every label table against the gold scores.

For each labelling stage of finished runs (`bi_scores`, `cross_scores` and the mutual averages
`average_bi_scores`, `average_cross_scores`, in the order the runs made them), the labels of the pool
pairs that are also STS-B dev or test pairs (the STS pool holds both, unlabeled: the paper's
transductive setting) are compared with those pairs' gold scores. This says what the labels teach
before any model is trained on them, e.g. whether averaging two PLMs' labels beats either alone.
STS-B test is a test split: read it as a diagnosis, never to choose settings.

    python bench/label_quality.py /path/to/store/runs/NAME/summary.json ... --out labels.json

The STS folder is $TRANS_ENCODER_DATA (default ../shared/data/sts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LABEL_STAGES = ("bi_scores", "average_bi_scores", "cross_scores", "average_cross_scores")


def label_stages(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The labelling stages of one run summary: name, cycle, model (None for averages) and uri."""
    return [s for s in summary["stages"] if s["name"] in LABEL_STAGES]


def gold_agreement(labels: Any, gold: Any) -> tuple[float, int]:
    """Spearman x 100 of `labels.score` against `gold.gold` on the pairs both hold (same sentences)."""
    from scipy.stats import spearmanr

    keys = ["sentence1", "sentence2"]
    merged = gold.merge(labels[[*keys, "score"]].drop_duplicates(keys), on=keys, how="inner")
    return 100.0 * float(spearmanr(merged["gold"], merged["score"]).statistic), len(merged)


def stsb_golds() -> dict[str, Any]:
    """STS-B dev and test as frames of sentence1, sentence2, gold (one row per distinct pair)."""
    import pandas as pd

    from trans_encoder_core.benchmarks import load_stsb

    root = os.environ.get("TRANS_ENCODER_DATA") or str(ROOT.parent / "shared/data/sts")
    golds = {}
    for split in ("dev", "test"):
        data = load_stsb(root, split)
        golds[split] = pd.DataFrame(
            {"sentence1": list(data.sentence1), "sentence2": list(data.sentence2), "gold": list(data.scores)}
        ).drop_duplicates(["sentence1", "sentence2"])
    return golds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import pandas as pd

    golds = stsb_golds()
    rows, seen = [], set()
    for path in args.summaries:
        summary = json.loads(path.read_text())
        for stage in label_stages(summary):
            if stage["uri"] in seen:
                continue
            seen.add(stage["uri"])
            labels = pd.read_parquet(f"{stage['uri']}/labels.parquet")
            row = {"run": summary["run_name"], "stage": stage["name"], "cycle": stage["cycle"]}
            row |= {"model": stage.get("model") or "average", "uri": stage["uri"]}
            for split, gold in golds.items():
                row[f"stsb_{split}"], row[f"n_{split}"] = gold_agreement(labels, gold)
            rows.append(row)
    print(f"{'run':<18}{'stage':<22}{'cycle':>6}  {'model':<16}{'STS-B dev':>10}{'STS-B test':>11}")
    for r in rows:
        print(
            f"{r['run']:<18}{r['stage']:<22}{r['cycle']:>6}  {str(r['model'])[:15]:<16}"
            f"{r['stsb_dev']:>10.2f}{r['stsb_test']:>11.2f}"
        )
    if args.out:
        command = ["python", "bench/label_quality.py", *map(str, args.summaries), "--out", str(args.out)]
        args.out.write_text(json.dumps({"command": " ".join(command), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
