"""Recheck a run's selected models outside this project: load their folders with sentence-transformers
and score STS-B test (and dev), next to what the run's own evaluation reported.

    python bench/st_recheck.py /path/to/store/runs/NAME/summary.json --out recheck.json

Bi-encoders load as `SentenceTransformer(folder)` (cosine of `encode`), cross-encoders as
`CrossEncoder(folder)` (`predict`, sigmoid) at the run's evaluation length, both with the settings
the folder itself holds, as a user would load them. The STS folder is $TRANS_ENCODER_DATA (default
../shared/data/sts).
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


def selected_models(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each PLM's selected bi and cross model: name, kind, folder, and the run's own scores."""
    out = []
    for name, model in summary["models"].items():
        for kind, entry in model["best"].items():
            out.append(
                {
                    "plm": name,
                    "kind": kind,
                    "folder": entry["model"],
                    "ours": entry["test"] | {"dev": entry["dev"]},
                }
            )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import numpy as np
    from scipy.stats import spearmanr
    from sentence_transformers import CrossEncoder, SentenceTransformer

    from trans_encoder_core.benchmarks import load_stsb

    root = os.environ.get("TRANS_ENCODER_DATA") or str(ROOT.parent / "shared/data/sts")
    splits = {"stsb": load_stsb(root, "test").scored(), "dev": load_stsb(root, "dev").scored()}
    summary = json.loads(args.summary.read_text())
    cross_length = {p["name"]: p["cross"]["eval_max_length"] for p in summary["config"]["plms"]}
    rows = []
    for entry in selected_models(summary):
        row = {k: entry[k] for k in ("plm", "kind", "folder")}
        if entry["kind"] == "bi":
            model = SentenceTransformer(entry["folder"], device="cpu")
            row["max_seq_length"] = model.max_seq_length
        else:
            model = CrossEncoder(entry["folder"], device="cpu", max_length=cross_length[entry["plm"]])
        for split, data in splits.items():
            a, b = list(data.sentence1), list(data.sentence2)
            if entry["kind"] == "bi":
                ea = model.encode(a, batch_size=128, normalize_embeddings=True)
                eb = model.encode(b, batch_size=128, normalize_embeddings=True)
                scores = (ea * eb).sum(1)
            else:
                scores = np.asarray(model.predict(list(zip(a, b, strict=True)), batch_size=64))
            row[f"{split}_theirs"] = 100 * float(spearmanr(scores, data.scores).statistic)
            row[f"{split}_ours"] = entry["ours"].get(split)
        rows.append(row)
        print(
            f"{row['plm']:<10}{row['kind']:<6} STS-B test ours {row['stsb_ours']:.2f} / theirs "
            f"{row['stsb_theirs']:.2f}; dev {row['dev_ours']:.2f} / {row['dev_theirs']:.2f}",
            flush=True,
        )
    if args.out:
        command = " ".join(["python", "bench/st_recheck.py", str(args.summary), "--out", str(args.out)])
        args.out.write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
