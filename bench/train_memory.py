"""Peak RSS of a short cross->bi fit and where it rises (one configuration per process).

A `train_bi_encoder` fit of the packaged model on the first 512 STS-B pool pairs (4 steps of 128),
dev-evaluated (STS-B dev) and checkpointed every 2 steps by the task layer's own writer
(`tasks.artifacts.save_checkpoint` into a local store in a temporary folder). Prints one JSON line:
the RSS before the fit, the rise of the high-water mark (VmHWM, reset through /proc/self/clear_refs)
during it, and, per checkpoint, the RSS before and after writing it and its size (stderr). The STS
folder is $TRANS_ENCODER_DATA (default ../shared/data/sts).

Usage: python bench/train_memory.py MODE LAYOUT PRECISION
       MODE: plain | eval | eval_ckpt; LAYOUT: padded | packed; PRECISION: fp32 | bf16
Run it once per configuration (fresh process each), with PYTHONPATH at the code to measure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _mb(field: str) -> int:
    return int(Path("/proc/self/status").read_text().split(field + ":")[1].split()[0]) // 1024


def main(argv: list[str]) -> None:
    import os
    import tempfile

    import numpy as np
    import torch

    from tasks.artifacts import save_checkpoint
    from tasks.store import Store
    from trans_encoder_core.benchmarks import load_stsb
    from trans_encoder_core.config import BiEncoderConfig, bi_fit_defaults
    from trans_encoder_core.distillation import train_bi_encoder
    from trans_encoder_core.encoders import BiEncoder
    from trans_encoder_core.evaluation import bi_scorer, dev_evaluator
    from trans_encoder_core.pool import training_pool

    mode, layout, precision = argv
    torch.set_num_threads(1)
    root = os.environ.get("TRANS_ENCODER_DATA") or str(
        Path(__file__).resolve().parents[2] / "shared/data/sts"
    )
    table, _ = training_pool(root, tasks=("stsb",))
    n = 512
    a, b = table["sentence1"].to_pylist()[:n], table["sentence2"].to_pylist()[:n]
    labels = np.random.default_rng(0).uniform(0, 1, n).astype(np.float32)
    bi = BiEncoder.from_pretrained("packaged", max_seq_length=32)
    bi.packing = layout == "packed"
    kwargs: dict[str, object] = {}
    if mode in ("eval", "eval_ckpt"):
        kwargs["evaluate"] = dev_evaluator(bi_scorer(bi), load_stsb(root, "dev"))
    if mode == "eval_ckpt":
        store = Store(tempfile.mkdtemp(prefix="te-train-memory-"))
        uri = store.uri("checkpoints", "train_bi", "bench", "state.safetensors")

        def checkpoint(state: object) -> None:
            before = _mb("VmRSS")
            save_checkpoint(store, uri, state)
            size = Path(store.path(uri)).stat().st_size
            print(f"checkpoint RSS MB: {before} -> {_mb('VmRSS')} written ({size >> 20} MB)", file=sys.stderr)

        kwargs.update(checkpoint=checkpoint, checkpoint_steps=2)
    cfg = BiEncoderConfig(fit=bi_fit_defaults(epochs=1, eval_steps=2, precision=precision))
    start = _mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    result = train_bi_encoder(bi, a, b, labels, cfg, **kwargs)
    print(
        json.dumps(
            {
                "mode": mode,
                "layout": layout,
                "precision": precision,
                "rss_before_mb": start,
                "peak_rise_mb": _mb("VmHWM") - start,
                "steps": result.steps,
                "dev": result.best_score,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
