"""Would a weighted average of two PLMs' labels teach better than the plain mean? A diagnosis.

Mutual distillation averages the PLMs' labels with equal weights (algorithm.md §1.6). For every
averaged labels stage of finished two-PLM runs (`average_bi_scores`, `average_cross_scores`), this
mixes the per-model columns the table keeps, `w * first + (1 - w) * second` (models by name) for w
on a grid, and prints the Spearman x 100 of each mix against the gold scores of the pool pairs that
are STS-B dev pairs and, as a diagnosis only, STS-B test pairs. The weight a run could choose is the
best on dev (the selection set); test then says whether that choice would have carried over.

    python bench/label_weights.py /path/to/store/runs/NAME/summary.json ... --out weights.json
    python bench/label_weights.py /path/to/store/stages/average_cross_scores/KEY ...  # stage folders

The STS folder is $TRANS_ENCODER_DATA (default ../shared/data/sts).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from label_quality import gold_agreement, stsb_golds  # noqa: E402

AVERAGE_STAGES = ("average_bi_scores", "average_cross_scores")
PREFIX = "score__"
GRID = [round(0.1 * i, 1) for i in range(11)]


def mix_rows(labels: Any, golds: dict[str, Any], grid: list[float]) -> tuple[list[str], list[dict[str, Any]]]:
    """Spearman of each mix on every gold split; the models are the table's two per-model columns."""
    models = sorted(c[len(PREFIX) :] for c in labels.columns if c.startswith(PREFIX))
    if len(models) != 2:
        raise ValueError(f"label_weights expects tables of exactly 2 models, got {models}.")
    first, second = (labels[f"{PREFIX}{m}"] for m in models)
    rows = []
    for w in grid:
        mixed = labels.assign(score=w * first + (1.0 - w) * second)
        rows.append({"w": w, **{split: gold_agreement(mixed, gold)[0] for split, gold in golds.items()}})
    return models, rows


def averaged_stages(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """A run summary's averaged labels stages, or one averaged stage's folder given directly."""
    if path.is_dir():
        meta = json.loads((path / "_COMMIT.json").read_text())["meta"]
        stage = {"name": path.parent.name, "cycle": meta["cycle"], "uri": str(path)}
        return f"stage folder in {path.parent.parent.parent}", [stage]
    summary = json.loads(path.read_text())
    return summary["run_name"], [s for s in summary["stages"] if s["name"] in AVERAGE_STAGES]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import pandas as pd

    golds = stsb_golds()
    results = []
    for path in args.summaries:
        run_name, stages = averaged_stages(path)
        for stage in stages:
            labels = pd.read_parquet(f"{stage['uri']}/labels.parquet")
            models, rows = mix_rows(labels, golds, GRID)
            best = max(rows, key=lambda r: r["dev"])
            results.append(
                {
                    "run": run_name,
                    "source": str(path),
                    "stage": stage["name"],
                    "cycle": stage["cycle"],
                }
                | {"w_is_weight_of": models[0], "rows": rows, "best_on_dev": best}
            )
            where = f"{path.name} {stage['name']} cycle {stage['cycle']}"
            print(f"{where}: w = weight of {models[0]} (1 - w: {models[1]})")
            print(f"{'w':>5}{'STS-B dev':>11}{'STS-B test':>12}")
            for r in rows:
                mark = "  <- best on dev" if r is best else ""
                print(f"{r['w']:>5.1f}{r['dev']:>11.2f}{r['test']:>12.2f}{mark}")
    if args.out:
        command = ["python", "bench/label_weights.py", *map(str, args.summaries), "--out", str(args.out)]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        report = {"command": " ".join(command), "commit": commit.strip(), "results": results}
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
