"""Training workloads of bench/speed.py: bi->cross and cross->bi steps, ours vs sentence-transformers.

Ours is `distillation.train_cross_encoder` / `train_bi_encoder` with the core's default fits (one
epoch, no evaluation); theirs the sentence-transformers v2 loop `old_fit` over a DataLoader whose
sampler is our `epoch_order`, with dropout reseeded per step as ours does (`StepClock`). Each builder
returns (warmup, run) like the scoring ones; run() returns losses, step timestamps and steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from speed_common import BATCH, FIT, LENGTH, train_kind
from speed_scoring import Workload, autocast


class StepClock:
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


def autocast_forward(module: Any, spec: dict[str, Any]) -> None:
    """Theirs in training under bf16: autocast the forward only, as our loop and their `use_amp` do."""
    if spec["precision"] == "fp32":
        return
    inner = module.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        with autocast(spec):
            return inner(*args, **kwargs)

    module.forward = forward


def no_dropout(module: Any) -> None:
    """Set every dropout of `module` to 0 (the `*_nodrop` measurements)."""
    import torch

    for sub in module.modules():
        if isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0


def _ours(spec: dict[str, Any], kind: str, a: list[str], b: list[str], labels: Any) -> Workload:
    from trans_encoder_core.config import (
        BiEncoderConfig,
        CrossEncoderConfig,
        bi_fit_defaults,
        cross_fit_defaults,
    )
    from trans_encoder_core.distillation import train_bi_encoder, train_cross_encoder
    from trans_encoder_core.encoders import BiEncoder, CrossEncoder

    defaults = cross_fit_defaults if kind == "train_cross" else bi_fit_defaults
    fast = bool(spec.get("fast", False))
    fit = defaults(
        epochs=1,
        eval_steps=0,
        precision=spec["precision"],
        seed=spec["seed"],
        fast_dropout=fast,
        fused_optimizer=fast,
    )
    if kind == "train_cross":
        model: Any = CrossEncoder.from_pretrained(spec["folders"]["cross"], max_length=LENGTH["cross"])
        cfg: Any = CrossEncoderConfig(max_length=LENGTH["cross"], fit=fit)
        train: Any = train_cross_encoder
    else:
        model = BiEncoder.from_pretrained(spec["folders"]["bi"], max_seq_length=LENGTH["bi"])
        cfg = BiEncoderConfig(max_seq_length=LENGTH["bi"], fit=fit)
        train = train_bi_encoder
    model.to(spec["device"])
    model.packing = spec.get("packing", False)
    if spec["nodrop"]:
        no_dropout(model)

    def run_ours() -> dict[str, Any]:
        stamps: list[float] = [time.perf_counter()]
        res = train(
            model, a, b, labels, cfg, evaluate=None, progress=lambda _: stamps.append(time.perf_counter())
        )
        return {"losses": res.losses, "stamps": stamps, "steps": res.steps}

    return (lambda: None), run_ours


def _st_setup(st: Any, model: Any, spec: dict[str, Any], examples: list[Any], kind: str) -> tuple[Any, Any]:
    """Our data order and per-step reseeding for their model; bf16 and no-dropout options."""
    from torch.utils.data import DataLoader

    from trans_encoder_core.training import epoch_order

    clock = StepClock(spec["seed"], st.smart_batching_collate)
    st.smart_batching_collate = clock.collate
    order = epoch_order(len(examples), spec["seed"], 0).tolist()
    loader = DataLoader(examples, batch_size=BATCH[kind], sampler=order)
    autocast_forward(model, spec)
    if spec["nodrop"]:
        no_dropout(model)
    return clock, loader


def _fit_options(kind: str, steps: int) -> dict[str, Any]:
    """Their `old_fit` options equal to our fit: AdamW eps/decay, clipping, linear warmup."""
    fit = FIT[kind]
    return {
        "epochs": 1,
        "warmup_steps": math.ceil(fit.warmup_ratio * steps),
        "optimizer_params": {"lr": fit.learning_rate, "eps": fit.adam_eps},  # not torch's eps 1e-8
        "weight_decay": fit.weight_decay,
        "max_grad_norm": fit.max_grad_norm,
        "show_progress_bar": False,
    }


def _st_cross(spec: dict[str, Any], a: list[str], b: list[str], labels: Any) -> tuple[Any, Any]:
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from sentence_transformers.sentence_transformer.readers import InputExample

    from trans_encoder_core.distillation import cross_training_examples

    st = STCrossEncoder(spec["folders"]["cross"], device=spec["device"], max_length=LENGTH["cross"])
    x, y, t = cross_training_examples(a, b, labels, both_orders=True, clamp=False)
    examples = [InputExample(texts=[p, q], label=float(v)) for p, q, v in zip(x, y, t)]
    clock, loader = _st_setup(st, st.model, spec, examples, "train_cross")
    bce = torch.nn.BCEWithLogitsLoss()
    options = _fit_options("train_cross", spec["steps"])

    def loss(logits: Any, target: Any) -> Any:
        return clock.record(bce(logits.float(), target))

    def fit_theirs() -> None:
        st.old_fit(loader, loss_fct=loss, **options)

    return clock, fit_theirs


def _st_bi(spec: dict[str, Any], a: list[str], b: list[str], labels: Any) -> tuple[Any, Any]:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from sentence_transformers.sentence_transformer.readers import InputExample

    st = SentenceTransformer(spec["folders"]["bi"], device=spec["device"])
    st.max_seq_length = LENGTH["bi"]
    examples = [InputExample(texts=[p, q], label=float(v)) for p, q, v in zip(a, b, labels)]
    clock, loader = _st_setup(st, st, spec, examples, "train_bi")

    class Recorded(CosineSimilarityLoss):
        def forward(self, features: Any, target: Any) -> Any:
            return clock.record(super().forward(features, target))

    loss = Recorded(st)
    options = _fit_options("train_bi", spec["steps"])

    def fit_theirs() -> None:
        st.old_fit([(loader, loss)], **options)

    return clock, fit_theirs


def train(spec: dict[str, Any], table: dict[str, Any]) -> Workload:
    """The training workload of `spec` (name, impl, steps, seed, ...) on the labelled `table`."""
    import numpy as np
    import torch

    kind = train_kind(spec["name"])
    steps = spec["steps"]
    per_step = BATCH[kind] // 2 if kind == "train_cross" else BATCH[kind]  # cross: both orders of a pair
    a, b = table["a"][: steps * per_step], table["b"][: steps * per_step]
    labels = np.asarray(table["labels"][: steps * per_step], dtype=np.float32)
    if kind == "train_bi":
        labels = np.clip(labels, 0.0, 1.0)  # stands in for the cross-encoder's probabilities
    torch.manual_seed(spec["seed"])
    if spec["impl"] == "ours":
        return _ours(spec, kind, a, b, labels)
    clock, fit_theirs = (_st_cross if kind == "train_cross" else _st_bi)(spec, a, b, labels)

    def run_theirs() -> dict[str, Any]:
        fit_theirs()
        end = time.perf_counter()
        return {
            "losses": [float(v) for v in clock.losses],
            "stamps": [*clock.stamps, end],
            "steps": clock.step,
        }

    return (lambda: None), run_theirs
