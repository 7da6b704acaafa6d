"""A tiny STS-B-format benchmark folder written by the tests, so guarantee tests never need real data.

`write_tiny_stsb(root)` writes `root/stsb/sts-{train,dev,test}.csv` in the STS-B release's layout
(tab-separated, no header, score in column 5, sentences in columns 6 and 7) with the line counts the
loader checks (5,749 / 1,500 / 1,379), but built from a few dozen short sentences over the tiny
models' vocabulary: scoring encodes each distinct sentence once, so evaluating on it costs a fraction
of a second. Gold scores are a fixed function of the two sentences' word overlap plus a seeded jitter,
so Spearman is well defined (no constant column) and the same in every session.

`MISSING_DATA_REASON` starts the skip reason of the `data_root` fixture (tests/conftest.py); the
session hook there fails the run when a test skipped for it while `../shared` exists.
"""

from __future__ import annotations

import random
from pathlib import Path

MISSING_DATA_REASON = "benchmark data not found"
SPLITS = ("train", "dev", "test")


def _pairs(n: int, rng: random.Random) -> list[tuple[float, str, str]]:
    from tests.tiny import CORPUS  # the tiny tokenizers' corpus: no unknown words

    rows = []
    for _ in range(n):
        a, b = rng.choice(CORPUS), rng.choice(CORPUS)
        words_a, words_b = set(a.split()), set(b.split())
        overlap = len(words_a & words_b) / len(words_a | words_b)
        score = min(5.0, max(0.0, 5.0 * overlap + rng.uniform(-0.5, 0.5)))
        rows.append((round(score, 3), a, b))
    return rows


def write_tiny_stsb(root: Path, seed: int = 7) -> Path:
    """Write a tiny STS-B folder under `root` (see the module docstring) and return `root`."""
    from trans_encoder_core.benchmarks import MANIFEST

    rng = random.Random(seed)
    folder = root / "stsb"
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        count = MANIFEST["stsb"][split][0]
        lines = [
            f"main-tiny\tTINY\t2022{split}\t{i:04d}\t{score:.3f}\t{s1}\t{s2}\n"
            for i, (score, s1, s2) in enumerate(_pairs(count, rng))
        ]
        (folder / f"sts-{split}.csv").write_text("".join(lines), encoding="utf-8")
    return root


def spearman_x100(model: Path, data: Path, task: str = "stsb") -> float:
    """A task's Spearman × 100 for a bi-encoder folder, computed independently of the pipeline's own
    metrics: cosines from the core's scorer, ranks and correlation from scipy."""
    from scipy.stats import spearmanr

    from trans_encoder_core.benchmarks import load_task
    from trans_encoder_core.encoders import BiEncoder
    from trans_encoder_core.scoring import bi_scores

    pairs = load_task(data, task)
    scores = bi_scores(BiEncoder.from_pretrained(model).eval(), pairs.sentence1, pairs.sentence2)
    return float(spearmanr(scores, pairs.scores).statistic * 100)
