"""The tables and model folders bench/speed.py measures on: pool, synthetic fallback, teacher labels."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from speed_common import BATCH, LENGTH, default_data


def synthetic_sentences(n: int, seed: int = 0) -> list[str]:
    """Distinct English-like sentences of STS-like length (5-25 words), for machines without the data."""
    words = (
        "a man woman child dog cat people group is are was playing running eating cutting riding talking "
        "the on in at with of to from over under near quickly slowly red blue green small large old young "
        "guitar flute bike car street park kitchen onion table market city river mountain government report "
        "said says new year today after before police minister company price stock fell rose sharply"
    ).split()
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 25))).capitalize() + "."
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def load_pool(data_root: str | None) -> tuple[list[str], list[str], dict[str, Any]]:
    """The transductive STS pool, or a synthetic one with the same repeat factor when data is missing."""
    root = data_root or default_data()
    if Path(root).is_dir():
        from trans_encoder_core.pool import training_pool

        table, stats = training_pool(root)
        info = {"source": "sts", "root": root, "n_pairs": stats["n_pairs"], "missing": stats["missing"]}
        return table["sentence1"].to_pylist(), table["sentence2"].to_pylist(), info
    n_pairs = 27_233
    distinct = synthetic_sentences(41_347)
    rng = random.Random(1)
    picks = distinct + [rng.choice(distinct) for _ in range(2 * n_pairs - len(distinct))]
    rng.shuffle(picks)
    info = {"source": "synthetic", "root": root, "n_pairs": n_pairs, "missing": ["all (no data folder)"]}
    return picks[:n_pairs], picks[n_pairs:], info


def repeat_factor(a: list[str], b: list[str]) -> float:
    """Rows x 2 over distinct sentences: the most that encoding each distinct sentence once can save."""
    return round(2 * len(a) / max(1, len(set(a) | set(b))), 3)


def training_rows(sizes: dict[str, Any]) -> int:
    """Pairs the training measurements consume (cross: half a batch of pairs per step, both orders)."""
    return max(sizes["cross_steps"] * BATCH["train_cross"] // 2, sizes["bi_steps"] * BATCH["train_bi"])


def build_tables(data_root: str | None, sizes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pair tables of every measurement; training rows get labels later (teacher cosines)."""
    s1, s2, info = load_pool(data_root)
    n = sizes["pool_pairs"] or len(s1)
    # The tail of the pool is STS-B, whose sentences repeat about as often as in the whole pool.
    pool = {"a": s1[-n:], "b": s2[-n:]}
    distinct = list(dict.fromkeys(s1 + s2))
    m = min(sizes["unique_pairs"], len(distinct) // 2)
    unique = {"a": distinct[0 : 2 * m : 2], "b": distinct[1 : 2 * m : 2]}
    c = sizes["cross_pairs"]
    cross = {"a": s1[-c:], "b": s2[-c:]}
    need = training_rows(sizes)
    if need > len(pool["a"]):
        raise SystemExit(f"speed.py: training needs {need} pairs, the pool table has {len(pool['a'])}.")
    tables = {
        "pool": pool,
        "unique": unique,
        "cross": cross,
        "train": {"a": pool["a"][:need], "b": pool["b"][:need]},
    }
    stats = {
        "data": info,
        "rows": {k: len(v["a"]) for k, v in tables.items()},
        "repeat_factor": {k: repeat_factor(v["a"], v["b"]) for k, v in tables.items()},
        "whole_pool_repeat_factor": repeat_factor(s1, s2),
    }
    return tables, stats


def prepare_models(model: str, folder: Path, seed: int) -> dict[str, str]:
    """Save our bi- and cross-encoder of `model` once; both libraries load these same folders."""
    import torch

    from trans_encoder_core.encoders import BiEncoder, CrossEncoder

    torch.manual_seed(seed)  # the cross-encoder's new head
    bi = BiEncoder.from_pretrained(model, max_seq_length=LENGTH["bi"])
    bi.save(folder / "bi")
    cross = CrossEncoder.from_pretrained(model, max_length=LENGTH["cross"])
    cross.save(folder / "cross")
    return {"bi": str(folder / "bi"), "cross": str(folder / "cross"), "pooling": bi.pooling}


def teacher_labels(
    folders: dict[str, str], table: dict[str, list[str]], device: str, precision: str
) -> list[float]:
    """The bi-encoder's cosines of the training rows (what a cycle trains the cross-encoder on)."""
    import torch

    from trans_encoder_core.encoders import BiEncoder
    from trans_encoder_core.scoring import bi_scores

    bi = BiEncoder.from_pretrained(folders["bi"], max_seq_length=LENGTH["bi"]).to(torch.device(device))
    return bi_scores(bi, table["a"], table["b"], precision=precision).tolist()
