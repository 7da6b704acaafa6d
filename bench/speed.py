"""Throughput of trans-encoder against sentence-transformers: same model, data, machine, one run.

Measurements (each side in its own fresh Python process unless --in-process):

  bi_pool      bi-encoder scoring of the STS pool (STS12-16 + STS-B, transductive; sentences repeat)
  bi_unique    bi-encoder scoring of a table without repeats (the pool's distinct sentences, paired)
  cross        cross-encoder scoring (max_length 64)
  train_cross  bi->cross training steps, soft-label BCE on the logit, both orders (batch 32)
  train_bi     cross->bi training steps, MSE on the cosine (batch 128)
  *_nodrop     the same training with every dropout set to 0, a few steps: loss curves must agree

Ours is `trans_encoder_core.scoring.bi_scores` / `cross_scores` and `distillation.train_*`; theirs is
`SentenceTransformer.encode` of both columns + pairwise cosine, `CrossEncoder.predict`, and the
sentence-transformers training loops `old_fit` (the v2 loop; v6's Trainer needs `accelerate` and
`datasets`, which the project does not install). Both sides load the same saved folders, so the weights
are identical, and both training runs see the same examples in the same order (ours: `epoch_order`;
theirs: a DataLoader with that order as its sampler) with dropout reseeded per step as ours does.

Memory: peak RSS of the measuring process during the timed call (Linux VmHWM, reset through
/proc/self/clear_refs after setup and warm-up) and its rise over the RSS at the start of the call;
on CUDA also torch.cuda.max_memory_allocated.

Usage: python bench/speed.py --quick              # smoke sizes (12 min at load 9 on 2 cores, mostly start-up)
       python bench/speed.py                      # full sizes (estimated ~30 min on 2 quiet cores)
       python bench/speed.py --only bi_pool cross --in-process
       python bench/speed.py --quick --pipeline   # plus the flow's orchestration overhead
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_DATA = "/work/shared/data/sts"
MEASUREMENTS = (
    "bi_pool",
    "bi_unique",
    "cross",
    "train_cross",
    "train_bi",
    "train_cross_nodrop",
    "train_bi_nodrop",
)
IMPLS = ("ours", "st")

# Sizes: rows of each table and optimiser steps. "full" = the whole pool (27k pairs, 41k distinct sentences).
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "pool_pairs": None,
        "unique_pairs": 10_000,
        "cross_pairs": 8_000,
        "cross_steps": 300,
        "bi_steps": 100,
        "match_steps": 10,
        "warmup_rows": 256,
        "pipeline_pairs": 2_000,
    },
    "quick": {
        "pool_pairs": 2_000,
        "unique_pairs": 400,
        "cross_pairs": 200,
        "cross_steps": 8,
        "bi_steps": 3,
        "match_steps": 2,
        "warmup_rows": 64,
        "pipeline_pairs": 64,
    },
}
BATCH = {"bi_score": 128, "cross_score": 64, "train_cross": 32, "train_bi": 128}
LENGTH = {"bi": 32, "cross": 64}
LR = {"train_cross": 2e-5, "train_bi": 5e-5}
WARMUP_RATIO = {"train_cross": 0.1, "train_bi": 0.0}


def _quiet() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


# ----------------------------------------------------------------------------------------------- data


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
    root = data_root or os.environ.get("TRANS_ENCODER_DATA") or DEFAULT_DATA
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
    need = max(sizes["cross_steps"] * BATCH["train_cross"] // 2, sizes["bi_steps"] * BATCH["train_bi"])
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


# --------------------------------------------------------------------------------------------- models


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


def _padded(lengths: Any, batches: list[Any]) -> int:
    return int(sum(len(idx) * int(lengths[idx].max()) for idx in batches if len(idx)))


def padded_tokens(folders: dict[str, str], tables: dict[str, Any], sizes: dict[str, Any], seed: int) -> dict:
    """Token positions each side feeds the model (batch x padded length, summed): load-independent work.

    Ours: distinct sentences (pairs for the cross-encoder) sorted by token length. Theirs, as
    sentence-transformers 6 does it: each column encoded separately, sorted by character length (the
    sum of both texts' characters for a pair). Training: the same batches on both sides; our bi step
    pads both columns together (one forward), theirs each column on its own (two forwards).
    """
    import numpy as np
    from transformers import AutoTokenizer

    from trans_encoder_core.batching import (
        length_sorted_batches,
        tokenize_pairs,
        tokenize_texts,
        unique_index,
    )
    from trans_encoder_core.distillation import cross_training_examples
    from trans_encoder_core.training import epoch_order

    tok = AutoTokenizer.from_pretrained(folders["bi"])
    out: dict[str, Any] = {}

    def chunks(order: Any, bs: int) -> list[Any]:
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    for name in ("pool", "unique"):
        a, b = tables[name]["a"], tables[name]["b"]
        texts, index = unique_index(a + b)
        lengths = tokenize_texts(tok, texts, LENGTH["bi"]).lengths()
        ours = _padded(lengths, length_sorted_batches(lengths, BATCH["bi_score"]))
        theirs = 0
        for col in (index[: len(a)], index[len(a) :]):
            chars = np.array([len(texts[i]) for i in col])
            theirs += _padded(lengths[col], chunks(np.argsort(-chars), BATCH["bi_score"]))
        real = int(lengths[index].sum())
        out[f"bi_{name}"] = {"ours": ours, "st": theirs, "real_tokens": real, "work_ratio": theirs / ours}
    a, b = tables["cross"]["a"], tables["cross"]["b"]
    lengths = tokenize_pairs(tok, a, b, LENGTH["cross"]).lengths()
    ours = _padded(lengths, length_sorted_batches(lengths, BATCH["cross_score"]))
    chars = np.array([len(x) + len(y) for x, y in zip(a, b)])
    theirs = _padded(lengths, chunks(np.argsort(-chars), BATCH["cross_score"]))
    out["cross"] = {
        "ours": ours,
        "st": theirs,
        "real_tokens": int(lengths.sum()),
        "work_ratio": theirs / ours,
    }
    train = tables["train"]
    n = sizes["cross_steps"] * BATCH["train_cross"] // 2
    x, y, _ = cross_training_examples(
        train["a"][:n], train["b"][:n], np.zeros(n), both_orders=True, clamp=False
    )
    lengths = tokenize_pairs(tok, x, y, LENGTH["cross"]).lengths()
    same = _padded(lengths, chunks(epoch_order(len(x), seed, 0), BATCH["train_cross"]))
    out["train_cross"] = {"ours": same, "st": same, "real_tokens": int(lengths.sum()), "work_ratio": 1.0}
    n = sizes["bi_steps"] * BATCH["train_bi"]
    la = tokenize_texts(tok, train["a"][:n], LENGTH["bi"]).lengths()
    lb = tokenize_texts(tok, train["b"][:n], LENGTH["bi"]).lengths()
    steps = chunks(epoch_order(n, seed, 0), BATCH["train_bi"])
    ours = sum(2 * len(i) * int(max(la[i].max(), lb[i].max())) for i in steps)
    theirs = _padded(la, steps) + _padded(lb, steps)
    out["train_bi"] = {
        "ours": ours,
        "st": theirs,
        "real_tokens": int(la.sum() + lb.sum()),
        "work_ratio": theirs / ours,
    }
    return out


# -------------------------------------------------------------------------------------- measurements
# Each builder returns (warmup, run): warmup() is untimed, run() is the timed call and returns a dict.


def _autocast(spec: dict[str, Any]) -> contextlib.AbstractContextManager[object]:
    """Theirs under bf16 when scoring: the whole call inside torch.autocast (they have no such option)."""
    import torch

    if spec["precision"] == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=spec["device_type"], dtype=torch.bfloat16)


def _autocast_forward(module: Any, spec: dict[str, Any]) -> None:
    """Theirs in training under bf16: autocast the forward only, as our loop and their `use_amp` do."""
    if spec["precision"] == "fp32":
        return
    inner = module.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        with _autocast(spec):
            return inner(*args, **kwargs)

    module.forward = forward


def _no_dropout(module: Any) -> None:
    import torch

    for sub in module.modules():
        if isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0


def _bi_score(spec: dict[str, Any], table: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    a, b, bs, w = table["a"], table["b"], BATCH["bi_score"], spec["warmup_rows"]
    if spec["impl"] == "ours":
        from trans_encoder_core.encoders import BiEncoder
        from trans_encoder_core.scoring import bi_scores

        bi = BiEncoder.from_pretrained(spec["folders"]["bi"], max_seq_length=LENGTH["bi"]).to(spec["device"])
        bi.packing = spec.get("packing", False)

        def ours(x: list[str], y: list[str]) -> Any:
            return bi_scores(bi, x, y, batch_size=bs, precision=spec["precision"])

        return (lambda: ours(a[:w], b[:w])), (lambda: {"scores": ours(a, b)})
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import pairwise_cos_sim

    st = SentenceTransformer(spec["folders"]["bi"], device=spec["device"])
    st.max_seq_length = LENGTH["bi"]

    def theirs(x: list[str], y: list[str]) -> Any:
        with _autocast(spec):
            ex = st.encode(x, batch_size=bs, convert_to_tensor=True, show_progress_bar=False)
            ey = st.encode(y, batch_size=bs, convert_to_tensor=True, show_progress_bar=False)
        return pairwise_cos_sim(ex.float(), ey.float()).cpu().numpy()

    return (lambda: theirs(a[:w], b[:w])), (lambda: {"scores": theirs(a, b)})


def _cross_score(spec: dict[str, Any], table: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    a, b, bs, w = table["a"], table["b"], BATCH["cross_score"], spec["warmup_rows"]
    if spec["impl"] == "ours":
        from trans_encoder_core.encoders import CrossEncoder
        from trans_encoder_core.scoring import cross_scores

        cross = CrossEncoder.from_pretrained(spec["folders"]["cross"], max_length=LENGTH["cross"])
        cross.to(spec["device"])
        cross.packing = spec.get("packing", False)

        def ours(x: list[str], y: list[str]) -> Any:
            return cross_scores(cross, x, y, batch_size=bs, precision=spec["precision"])

        return (lambda: ours(a[:w], b[:w])), (lambda: {"scores": ours(a, b)})
    from sentence_transformers import CrossEncoder as STCrossEncoder

    st = STCrossEncoder(spec["folders"]["cross"], device=spec["device"], max_length=LENGTH["cross"])

    def theirs(x: list[str], y: list[str]) -> Any:
        with _autocast(spec):
            out = st.predict(list(zip(x, y)), batch_size=bs, show_progress_bar=False, convert_to_numpy=True)
        return out.astype("float32")

    return (lambda: theirs(a[:w], b[:w])), (lambda: {"scores": theirs(a, b)})


class _StepClock:
    """Step timestamps and losses of sentence-transformers' loop, and our per-step dropout reseeding.

    `collate` wraps the model's smart_batching_collate: it runs right before each forward, so it
    reseeds torch exactly where our `fit` does (step_seed(seed, step)) and stamps the step start.
    """

    def __init__(self, seed: int, collate: Callable[[Any], Any]) -> None:
        self.seed, self.inner, self.step = seed, collate, 0
        self.stamps: list[float] = []
        self.losses: list[Any] = []

    def collate(self, batch: Any) -> Any:
        import torch

        from trans_encoder_core.runtime import step_seed

        self.stamps.append(time.perf_counter())
        out = self.inner(batch)
        torch.manual_seed(step_seed(self.seed, self.step))
        self.step += 1
        return out

    def record(self, loss: Any) -> Any:
        self.losses.append(loss.detach())  # a tensor: no per-step device sync added to their loop
        return loss


def _train(spec: dict[str, Any], table: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    import numpy as np
    import torch

    kind = "train_cross" if spec["name"].startswith("train_cross") else "train_bi"
    steps, bs, seed = spec["steps"], BATCH[kind], spec["seed"]
    per_step = bs // 2 if kind == "train_cross" else bs  # cross trains on both orders of each pair
    a, b = table["a"][: steps * per_step], table["b"][: steps * per_step]
    labels = np.asarray(table["labels"][: steps * per_step], dtype=np.float32)
    if kind == "train_bi":
        labels = np.clip(labels, 0.0, 1.0)  # stands in for the cross-encoder's probabilities
    warmup_steps = math.ceil(WARMUP_RATIO[kind] * steps)
    torch.manual_seed(seed)
    if spec["impl"] == "ours":
        from trans_encoder_core.config import (
            BiEncoderConfig,
            CrossEncoderConfig,
            bi_fit_defaults,
            cross_fit_defaults,
        )
        from trans_encoder_core.distillation import train_bi_encoder, train_cross_encoder
        from trans_encoder_core.encoders import BiEncoder, CrossEncoder

        fit = {"epochs": 1, "eval_steps": 0, "precision": spec["precision"], "seed": seed}
        if kind == "train_cross":
            model: Any = CrossEncoder.from_pretrained(spec["folders"]["cross"], max_length=LENGTH["cross"])
            cfg: Any = CrossEncoderConfig(max_length=LENGTH["cross"], fit=cross_fit_defaults(**fit))
            train: Any = train_cross_encoder
        else:
            model = BiEncoder.from_pretrained(spec["folders"]["bi"], max_seq_length=LENGTH["bi"])
            cfg = BiEncoderConfig(max_seq_length=LENGTH["bi"], fit=bi_fit_defaults(**fit))
            train = train_bi_encoder
        model.to(spec["device"])
        model.packing = spec.get("packing", False)
        if spec["nodrop"]:
            _no_dropout(model)
        assert cfg.fit.learning_rate == LR[kind] and cfg.fit.batch_size == bs

        def run_ours() -> dict[str, Any]:
            stamps: list[float] = [time.perf_counter()]
            res = train(
                model, a, b, labels, cfg, evaluate=None, progress=lambda _: stamps.append(time.perf_counter())
            )
            return {"losses": res.losses, "stamps": stamps, "steps": res.steps}

        return (lambda: None), run_ours

    from torch.utils.data import DataLoader

    from trans_encoder_core.distillation import cross_training_examples
    from trans_encoder_core.training import epoch_order

    optim = {"lr": LR[kind], "eps": 1e-6}  # our AdamW eps (the official code's), not torch's 1e-8
    if kind == "train_cross":
        from sentence_transformers import CrossEncoder as STCrossEncoder
        from sentence_transformers.sentence_transformer.readers import InputExample

        st: Any = STCrossEncoder(spec["folders"]["cross"], device=spec["device"], max_length=LENGTH["cross"])
        x, y, t = cross_training_examples(a, b, labels, both_orders=True, clamp=False)
        examples = [InputExample(texts=[p, q], label=float(v)) for p, q, v in zip(x, y, t)]
        clock = _StepClock(seed, st.smart_batching_collate)
        st.smart_batching_collate = clock.collate
        loader = DataLoader(examples, batch_size=bs, sampler=epoch_order(len(examples), seed, 0).tolist())
        bce = torch.nn.BCEWithLogitsLoss()
        _autocast_forward(st.model, spec)
        if spec["nodrop"]:
            _no_dropout(st.model)

        def fit_theirs() -> None:
            st.old_fit(
                loader,
                epochs=1,
                loss_fct=lambda logits, target: clock.record(bce(logits.float(), target)),
                warmup_steps=warmup_steps,
                optimizer_params=optim,
                weight_decay=0.01,
                max_grad_norm=1.0,
                show_progress_bar=False,
            )

    else:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
        from sentence_transformers.sentence_transformer.readers import InputExample

        st = SentenceTransformer(spec["folders"]["bi"], device=spec["device"])
        st.max_seq_length = LENGTH["bi"]
        examples = [InputExample(texts=[p, q], label=float(v)) for p, q, v in zip(a, b, labels)]
        clock = _StepClock(seed, st.smart_batching_collate)
        st.smart_batching_collate = clock.collate
        loader = DataLoader(examples, batch_size=bs, sampler=epoch_order(len(examples), seed, 0).tolist())
        _autocast_forward(st, spec)
        if spec["nodrop"]:
            _no_dropout(st)

        class Recorded(CosineSimilarityLoss):
            def forward(self, features: Any, target: Any) -> Any:
                return clock.record(super().forward(features, target))

        loss = Recorded(st)

        def fit_theirs() -> None:
            st.old_fit(
                [(loader, loss)],
                epochs=1,
                warmup_steps=warmup_steps,
                optimizer_params=optim,
                weight_decay=0.01,
                max_grad_norm=1.0,
                show_progress_bar=False,
            )

    def run_theirs() -> dict[str, Any]:
        fit_theirs()
        end = time.perf_counter()
        return {
            "losses": [float(v) for v in clock.losses],
            "stamps": [*clock.stamps, end],
            "steps": clock.step,
        }

    return (lambda: None), run_theirs


BUILDERS = {"bi_score": _bi_score, "cross_score": _cross_score, "train": _train}
KIND = {
    "bi_pool": ("bi_score", "pool"),
    "bi_unique": ("bi_score", "unique"),
    "cross": ("cross_score", "cross"),
    "train_cross": ("train", "train"),
    "train_bi": ("train", "train"),
    "train_cross_nodrop": ("train", "train"),
    "train_bi_nodrop": ("train", "train"),
}


# ------------------------------------------------------------------------------------------ harness


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Set up one (measurement, implementation), warm up, then time the call and take its peak memory."""
    import numpy as np
    import torch

    _quiet()
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    spec["device_type"] = torch.device(spec["device"]).type
    tables = json.loads(Path(spec["data"]).read_text())
    kind, table_name = KIND[spec["name"]]
    warmup, run = BUILDERS[kind](spec, tables[table_name])
    warmup()
    gc.collect()
    cuda = spec["device_type"] == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    reset_ok = _reset_peak_rss()
    rss0 = _status_kb("VmRSS") or 0
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    times, cpu = [], []
    for _ in range(spec.get("repeat", 1) if kind != "train" else 1):
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        out = run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu.append(usage1.ru_utime - usage0.ru_utime + usage1.ru_stime - usage0.ru_stime)
    seconds = min(times)
    hwm = _status_kb("VmHWM") or 0
    result: dict[str, Any] = {
        "name": spec["name"],
        "impl": spec["impl"],
        "seconds": seconds,
        "seconds_all": times,
        "cpu_seconds": cpu[times.index(seconds)],
        "load_average_1min": [load0, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
        "rss_start_mb": rss0 / 1024,
        "peak_rss_mb": hwm / 1024 if reset_ok else None,
        "peak_rss_delta_mb": (hwm - rss0) / 1024 if reset_ok else None,
        "torch_threads": torch.get_num_threads(),
    }
    if cuda:
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["cuda_max_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    if "scores" in out:
        path = Path(spec["result_dir"]) / f"{spec['name']}-{spec['impl']}.npy"
        np.save(path, np.asarray(out["scores"], dtype=np.float32))
        result["scores_path"] = str(path)
        result["examples"] = len(out["scores"])
    else:
        stamps = out["stamps"]
        result["losses"] = out["losses"]
        result["steps"] = out["steps"]
        result["step_seconds"] = [b - a for a, b in zip(stamps, stamps[1:])]
        kind = "train_cross" if spec["name"].startswith("train_cross") else "train_bi"
        result["examples"] = out["steps"] * BATCH[kind]
    return result


def run_measurement(spec: dict[str, Any], in_process: bool) -> dict[str, Any]:
    if in_process:
        try:
            return measure(dict(spec))
        finally:
            gc.collect()
    spec_path = Path(spec["result_dir"]) / f"spec-{spec['name']}-{spec['impl']}.json"
    out_path = spec_path.with_suffix(".out.json")
    spec_path.write_text(json.dumps({**spec, "out": str(out_path)}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(spec["threads"])
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0 or not out_path.exists():
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"{spec['name']}/{spec['impl']} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(out_path.read_text())


# ------------------------------------------------------------------------------------- comparisons


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def compare(name: str, ours: dict[str, Any], theirs: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    row: dict[str, Any] = {
        "measurement": name,
        "ours_examples_per_s": ours["examples"] / ours["seconds"],
        "st_examples_per_s": theirs["examples"] / theirs["seconds"],
        "ours_seconds": ours["seconds"],
        "st_seconds": theirs["seconds"],
    }
    row["ratio"] = row["ours_examples_per_s"] / row["st_examples_per_s"]
    row["cpu_seconds"] = [ours["cpu_seconds"], theirs["cpu_seconds"]]
    row["load_average_1min"] = [ours["load_average_1min"], theirs["load_average_1min"]]
    work = stats["padded_tokens"].get(name)
    if work:
        row["padded_tokens"] = [work["ours"], work["st"]]
        row["work_ratio"] = work["work_ratio"]
    if "scores_path" in ours:
        x, y = np.load(ours["scores_path"]), np.load(theirs["scores_path"])
        row["max_abs_score_diff"] = float(np.abs(x.astype(np.float64) - y).max())
        table = KIND[name][1]
        row["rows"] = stats["rows"][table]
        row["repeat_factor"] = stats["repeat_factor"][table]
    else:
        lo, lt = ours["losses"], theirs["losses"]
        n = min(len(lo), len(lt))
        diffs = [abs(p - q) for p, q in zip(lo[:n], lt[:n])]
        row["steps"] = [ours["steps"], theirs["steps"]]
        row["loss_curve_max_abs_diff"] = max(diffs) if diffs else None
        row["first_loss_abs_diff"] = diffs[0] if diffs else None
        row["mean_loss"] = [sum(lo) / max(1, len(lo)), sum(lt) / max(1, len(lt))]
        so, stt = _median(ours["step_seconds"]), _median(theirs["step_seconds"])
        row["median_step_s"] = [so, stt]
        row["median_step_ratio"] = (stt / so) if so and stt else None
    for key in ("peak_rss_mb", "peak_rss_delta_mb", "cuda_max_allocated_mb"):
        if ours.get(key) is not None:
            row[key] = [ours[key], theirs.get(key)]
    return row


def _notes(row: dict[str, Any]) -> str:
    if "max_abs_score_diff" in row:
        return (
            f"{row['rows']} rows, repeat x{row['repeat_factor']}, padded-token work ratio "
            f"{row['work_ratio']:.2f}, max|diff| {row['max_abs_score_diff']:.1e}, "
            f"{row['ours_seconds']:.1f}s/{row['st_seconds']:.1f}s (cpu {row['cpu_seconds'][0]:.0f}/"
            f"{row['cpu_seconds'][1]:.0f}s)"
        )
    med = row["median_step_s"]
    med_text = f"median step {med[0]:.2f}s/{med[1]:.2f}s" if None not in med else "median step n/a"
    work = f", work ratio {row['work_ratio']:.2f}" if "work_ratio" in row else ""
    return (
        f"{row['steps'][0]} steps, {med_text}{work}, loss curve max|diff| "
        f"{row['loss_curve_max_abs_diff']:.1e} (step 1: {row['first_loss_abs_diff']:.1e})"
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| measurement | ours (ex/s) | sentence-transformers (ex/s) | ratio "
        "| peak RSS MB ours/theirs (rise) | notes |"
    )
    lines = [head, "|---|---:|---:|---:|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['measurement']} | | | | | FAILED: {r['error'][:80]} |")
            continue
        mem = ""
        if r.get("peak_rss_mb"):
            (po, pt), (do, dt_) = r["peak_rss_mb"], r["peak_rss_delta_mb"]
            mem = f"{po:.0f}/{pt:.0f} (+{do:.0f}/+{dt_:.0f})"
        if r.get("cuda_max_allocated_mb"):
            go, gt = r["cuda_max_allocated_mb"]
            mem += f"; GPU {go:.0f}/{gt:.0f}"
        lines.append(
            f"| {r['measurement']} | {r['ours_examples_per_s']:.1f} | {r['st_examples_per_s']:.1f} | "
            f"{r['ratio']:.2f} | {mem} | {_notes(r)} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ pipeline hook


def pipeline_overhead(
    max_pairs: int,
    *,
    eval_tasks: list[str] | None = None,
    device: str = "auto",
    model: str = "packaged",
    data: str | None = None,
) -> dict[str, Any]:
    """HOOK: the pipeline's own overhead on the `quick` self-distillation flow, run twice.

    Runs `flows.distill.distill(preset_config("quick", store=<tmp>, run_name=..., max_pairs=N))`
    in a fresh store, then again unchanged (every stage cached). Reports the first run's wall time,
    the sum of its stages' seconds (compute + store commit, as measured by `tasks.stages.run_stage`),
    the rest as overhead (Prefect task orchestration, logging, non-stage tasks, report), and the
    fully cached rerun's wall time. Prefect's ephemeral API server is started by a no-op flow first and
    reported separately (`prefect_startup_s`), so the overhead is that of a warm process.
    """
    with tempfile.TemporaryDirectory(prefix="te-bench-pipeline-") as tmp:
        os.environ["PREFECT_HOME"] = str(Path(tmp) / "prefect-home")  # never the user's ~/.prefect
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        _quiet()
        from prefect import flow

        from flows.config import preset_config
        from flows.distill import distill

        @flow(name="bench-noop")
        def noop() -> int:
            return 0

        t0 = time.perf_counter()
        noop()
        startup = time.perf_counter() - t0
        overrides: dict[str, Any] = {
            "store": str(Path(tmp) / "store"),
            "max_pairs": max_pairs,
            "device": device,
            "data": data or os.environ.get("TRANS_ENCODER_DATA") or DEFAULT_DATA,
        }
        if eval_tasks:
            overrides["eval_tasks"] = eval_tasks
        device = overrides.pop("device")
        cfg = preset_config("quick", run_name="bench-overhead", **overrides)
        (plm,) = cfg.plms
        plm = plm.model_copy(update={"bi": plm.bi.model_copy(update={"model": model}), "device": device})
        cfg = cfg.model_copy(update={"plms": [plm]})
        t1 = time.perf_counter()
        first = distill(cfg)
        t2 = time.perf_counter()
        second = distill(cfg)
        t3 = time.perf_counter()
    total, stage_sum = t2 - t1, sum(s["seconds"] for s in first["stages"])
    return {
        "max_pairs": max_pairs,
        "eval_tasks": cfg.eval_tasks,
        "prefect_startup_s": startup,
        "total_s": total,
        "stage_compute_s": stage_sum,
        "overhead_s": total - stage_sum,
        "overhead_fraction": (total - stage_sum) / total,
        "cached_rerun_s": t3 - t2,
        "cached_rerun_all_cached": second["all_cached"],
        "stages": [{k: s[k] for k in ("name", "cycle", "cached", "seconds")} for s in first["stages"]],
    }


def run_pipeline(args: argparse.Namespace, sizes: dict[str, Any], result_dir: Path) -> dict[str, Any]:
    """pipeline_overhead() in its own process (a fresh Prefect home; nothing shared with the rest)."""
    spec = {
        "pipeline": True,
        "max_pairs": args.pipeline_pairs or sizes["pipeline_pairs"],
        "eval_tasks": ["stsb"] if args.quick else None,
        "device": args.device,
        "model": args.model,
        "data": args.data,
    }
    spec_path = result_dir / "spec-pipeline.json"
    out_path = result_dir / "spec-pipeline.out.json"
    spec_path.write_text(json.dumps({**spec, "out": str(out_path)}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0 or not out_path.exists():
        return {"error": (proc.stdout + proc.stderr)[-3000:]}
    return json.loads(out_path.read_text())


# ------------------------------------------------------------------------------------------- driver


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads_default": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["cpu_model"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return info


def versions() -> dict[str, Any]:
    from importlib import metadata

    out: dict[str, Any] = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "tokenizers", "sentence-transformers", "trans-encoder", "prefect"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def run_suite(
    *,
    model: str,
    device: str,
    precision: str,
    threads: int | None,
    sizes: dict[str, Any],
    only: list[str],
    in_process: bool,
    seed: int,
    data_root: str | None,
    work: Path,
    label: str | None = None,
    repeat: int = 1,
    packing: bool = False,
) -> dict[str, Any]:
    """Prepare folders and tables in `work`, run every measurement for both sides, compare."""
    import torch

    _quiet()
    if threads:
        torch.set_num_threads(threads)
    folders = prepare_models(model, work / "models", seed)
    tables, stats = build_tables(data_root, sizes)
    result_dir = work / "results"
    result_dir.mkdir(parents=True, exist_ok=True)
    if any(name.startswith("train") for name in only):
        prec = precision if precision != "auto" else "fp32"
        tables["train"]["labels"] = teacher_labels(folders, tables["train"], device, prec)
    stats["padded_tokens"] = padded_tokens(folders, tables, sizes, seed)
    data_path = work / "tables.json"
    data_path.write_text(json.dumps(tables))
    base = {
        "folders": folders,
        "device": device,
        "precision": precision,
        "packing": packing,
        "threads": threads,
        "seed": seed,
        "warmup_rows": sizes["warmup_rows"],
        "repeat": repeat,
        "data": str(data_path),
        "result_dir": str(result_dir),
    }
    rows, raw = [], {}
    for name in only:
        steps = {"train_cross": "cross_steps", "train_bi": "bi_steps"}
        spec = {**base, "name": name, "nodrop": name.endswith("_nodrop")}
        if name.startswith("train"):
            spec["steps"] = (
                sizes["match_steps"] if spec["nodrop"] else sizes[steps[name.removesuffix("_nodrop")]]
            )
        try:
            results = {}
            for impl in IMPLS:
                tag = f"[{label}] " if label else ""
                print(f"{tag}{name} / {impl} ...", file=sys.stderr, flush=True)
                results[impl] = run_measurement({**spec, "impl": impl}, in_process)
            raw[name] = results
            rows.append(compare(name, results["ours"], results["st"], stats))
        except RuntimeError as exc:
            print(str(exc), file=sys.stderr)
            rows.append({"measurement": name, "error": str(exc)})
    for result in raw.values():  # losses stay in the JSON; the score arrays are only compared
        for side in result.values():
            side.pop("scores_path", None)
    return {"tables": stats, "rows": rows, "raw": raw, "model_folders": folders}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--model", default="packaged", help="model name or folder (default: packaged all-MiniLM-L6-v2)"
    )
    p.add_argument("--quick", action="store_true", help="small smoke sizes (minutes on 2 busy cores)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/speed-<device>.json)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--packing", action="store_true", help="ours on packed rows (trans_encoder_core.packing)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--only", nargs="*", choices=MEASUREMENTS, default=list(MEASUREMENTS), help="none: pipeline only"
    )
    p.add_argument(
        "--in-process", action="store_true", help="one process for all (faster, memory less honest)"
    )
    p.add_argument("--pipeline", action="store_true", help="also measure the flow's overhead (slow)")
    p.add_argument("--pipeline-pairs", type=int, default=None, help="max_pairs of the pipeline run")
    p.add_argument("--cross-steps", type=int, default=None)
    p.add_argument("--bi-steps", type=int, default=None)
    p.add_argument(
        "--repeat", type=int, default=1, help="time each scoring call this many times, keep the best"
    )
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument(
        "--data", default=None, help="STS folder (default $TRANS_ENCODER_DATA or /work/shared/data/sts)"
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("pipeline"):
        result = pipeline_overhead(
            spec["max_pairs"],
            eval_tasks=spec["eval_tasks"],
            device=spec["device"],
            model=spec["model"],
            data=spec["data"],
        )
    else:
        result = measure(spec)
    Path(spec["out"]).write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return
    sizes = dict(SIZES["quick" if args.quick else "full"])
    if args.cross_steps:
        sizes["cross_steps"] = args.cross_steps
    if args.bi_steps:
        sizes["bi_steps"] = args.bi_steps
    out = Path(args.out) if args.out else BENCH_DIR / "results" / f"speed-{args.device}.json"
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="te-bench-speed-") as tmp:
        suite: dict[str, Any] = {"rows": []}
        if args.only:
            suite = run_suite(
                model=args.model,
                device=args.device,
                precision=args.precision,
                packing=args.packing,
                threads=args.threads,
                sizes=sizes,
                only=args.only,
                in_process=args.in_process,
                seed=args.seed,
                data_root=args.data,
                work=Path(tmp),
                repeat=args.repeat,
            )
            suite.pop("model_folders")
        if args.pipeline:
            (Path(tmp) / "results").mkdir(parents=True, exist_ok=True)
            pipeline = run_pipeline(args, sizes, Path(tmp) / "results")
        else:
            pipeline = None
    report = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "settings": {
            "model": args.model,
            "device": args.device,
            "precision": args.precision,
            "packing": args.packing,
            "threads": args.threads,
            "quick": args.quick,
            "sizes": sizes,
            "batch": BATCH,
            "length": LENGTH,
            "learning_rate": LR,
            "warmup_ratio": WARMUP_RATIO,
            "seed": args.seed,
            "repeat": args.repeat,
            "isolation": "in-process (VmHWM reset per measurement)"
            if args.in_process
            else "one fresh process per measurement and side (VmHWM reset after setup + warm-up)",
            "st_training": "sentence-transformers old_fit (v2 loop), our data order, per-step dropout reseed",
        },
        "versions": versions(),
        "machine": machine_info(),
        **suite,
        "pipeline": pipeline,
        "wall_seconds": time.time() - started,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if suite["rows"]:
        print(format_table(suite["rows"]))
    if pipeline:
        if "error" in pipeline:
            print("pipeline: FAILED\n" + pipeline["error"])
        else:
            print(
                f"pipeline (quick, max_pairs={pipeline['max_pairs']}): total {pipeline['total_s']:.1f}s, "
                f"stages "
                f"{pipeline['stage_compute_s']:.1f}s, overhead {pipeline['overhead_s']:.1f}s "
                f"({100 * pipeline['overhead_fraction']:.1f}%), "
                f"cached rerun {pipeline['cached_rerun_s']:.1f}s, "
                f"Prefect startup {pipeline['prefect_startup_s']:.1f}s"
            )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
