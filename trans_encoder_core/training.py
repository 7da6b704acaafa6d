"""One training loop for both encoders (algorithm.md §1.4 B/D, §2.1).

AdamW (eps 1e-6, weight decay 0.01 except biases and LayerNorm), linear warmup then linear decay to
zero, gradient clipping at 1.0, autocast where configured, dev evaluation every `eval_steps` steps
(the counter restarts each epoch) and at each epoch end, and the best-dev weights kept in CPU memory
and loaded back at the end. A fit can be checkpointed and resumed at any step with identical results:
shuffles are seeded per epoch and dropout per step.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trans_encoder_core.allocator import keep_heap
from trans_encoder_core.config import FitConfig
from trans_encoder_core.dropout import fast_dropout
from trans_encoder_core.runtime import autocast, check_stop, eval_mode, resolve_precision, step_seed

logger = logging.getLogger(__name__)

StepLoss = Callable[[np.ndarray], torch.Tensor]
Evaluate = Callable[[], float]

_NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm.weight", "layer_norm.bias")


@dataclass
class EvalPoint:
    epoch: int
    step: int
    global_step: int
    score: float


@dataclass
class TrainState:
    """Everything needed to continue a fit exactly where it stopped."""

    global_step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    best_model: dict[str, torch.Tensor] | None
    best_score: float
    best_step: int
    history: list[EvalPoint] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


@dataclass
class TrainResult:
    """Outcome of a fit; the module already holds the returned (best-dev or last) weights."""

    best_score: float | None
    best_step: int
    steps: int
    history: list[EvalPoint]
    losses: list[float]
    seconds: float
    precision: str


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's weights."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def copy_state_into(
    target: dict[str, torch.Tensor] | None, module: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """`cpu_state(module)`, written into `target`'s tensors when it has the same layout.

    Keeping the best weights this way never holds two copies at once (a fresh copy would exist
    next to the previous best until that is freed).
    """
    live = module.state_dict()
    if target is None or target.keys() != live.keys():
        return cpu_state(module)
    for name, value in live.items():
        if target[name].shape != value.shape or target[name].dtype != value.dtype:
            return cpu_state(module)
    for name, value in live.items():
        target[name].copy_(value.detach())
    return target


def _checkpoint_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights for a checkpoint: on the CPU the live tensors themselves (no copy; the
    checkpoint callback serialises them before training continues), else a CPU copy."""
    return {k: v.detach().to("cpu") for k, v in module.state_dict().items()}


def make_optimizer(module: torch.nn.Module, cfg: FitConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (no_decay if any(tag in name for tag in _NO_DECAY) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused=None keeps torch's default (foreach); True is the fused kernel, on CPU and GPU alike.
    fused = True if cfg.fused_optimizer else None
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, eps=cfg.adam_eps, fused=fused)


def linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warmup to 1, then linear decay to 0 at the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def epoch_order(n_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled example order of one epoch, a pure function of (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 10_007 + epoch)
    return torch.randperm(n_examples, generator=gen).numpy()


def fit(
    module: torch.nn.Module,
    n_examples: int,
    step_loss: StepLoss,
    cfg: FitConfig,
    *,
    evaluate: Evaluate | None = None,
    checkpoint: Callable[[TrainState], None] | None = None,
    checkpoint_steps: int = 0,
    resume: TrainState | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
    eval_autocast: bool | None = None,
) -> TrainResult:
    """Train `module` on `n_examples` examples; `step_loss(indices)` returns the batch loss.

    `checkpoint` is called at each epoch end and every `checkpoint_steps` steps (0: epoch ends only)
    with a `TrainState` that `resume` accepts to continue the same fit; it must serialise the state
    before returning (on the CPU its `model` tensors are the live weights, released afterwards).
    `eval_autocast` (default: `cfg.eval_autocast`) runs `evaluate` under the training precision's
    autocast (e.g. bf16 inference when training uses bf16); off, evaluation computes as the scorer
    itself does (fp32 by default).
    """
    eval_autocast = cfg.eval_autocast if eval_autocast is None else eval_autocast
    keep_heap()  # steps reuse freed memory instead of page-faulting fresh mappings (exact)
    if n_examples < 1:
        raise ValueError("Training expects at least one example, got 0; check the pair table.")
    device = next(module.parameters()).device
    precision = resolve_precision(cfg.precision, device)
    steps_per_epoch = math.ceil(n_examples / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizer = make_optimizer(module, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(total, math.ceil(cfg.warmup_ratio * total))
    )
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    state = resume or TrainState(0, {}, {}, {}, None, -math.inf, -1)
    if resume is not None:
        module.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)  # copies the moments
        scheduler.load_state_dict(resume.scheduler)
        state.model, state.optimizer = {}, {}  # loaded: the copies are no longer needed
    start = time.perf_counter()

    def run_eval(epoch: int, step: int) -> None:
        if evaluate is None:
            return
        cast = autocast(precision, device) if eval_autocast else contextlib.nullcontext()
        with eval_mode(module), torch.inference_mode(), cast:
            score = float(evaluate())
        state.history.append(EvalPoint(epoch, step, state.global_step, score))
        if score > state.best_score:
            state.best_score, state.best_step = score, state.global_step
            state.best_model = copy_state_into(state.best_model, module)
        logger.info("eval epoch %d step %d: dev %.2f (best %.2f)", epoch, step, score, state.best_score)

    def save_checkpoint() -> None:
        if checkpoint is not None:
            state.model, state.optimizer = _checkpoint_weights(module), optimizer.state_dict()
            state.scheduler = scheduler.state_dict()
            checkpoint(state)
            state.model, state.optimizer = {}, {}  # serialised: do not hold a second copy

    drops = fast_dropout(module) if cfg.fast_dropout else contextlib.nullcontext()
    with drops:
        module.train()
        for epoch in range(state.global_step // steps_per_epoch, cfg.epochs):
            order = epoch_order(n_examples, cfg.seed, epoch)
            for step in range(state.global_step - epoch * steps_per_epoch, steps_per_epoch):
                # a stop keeps the last checkpoint as the resume point
                check_stop(f"training step {state.global_step + 1}")
                torch.manual_seed(step_seed(cfg.seed, state.global_step))
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                with autocast(precision, device):
                    loss = step_loss(idx)
                _backward_step(module, loss, optimizer, scaler, cfg.max_grad_norm)
                scheduler.step()
                state.global_step += 1
                state.losses.append(float(loss.detach()))
                if progress is not None:
                    progress({"step": state.global_step, "total": total, "loss": state.losses[-1]})
                last = step + 1 == steps_per_epoch
                if last or (cfg.eval_steps and (step + 1) % cfg.eval_steps == 0):
                    run_eval(epoch, step + 1)
                if last or (checkpoint_steps and state.global_step % checkpoint_steps == 0):
                    save_checkpoint()
    if state.best_model is not None:
        module.load_state_dict(state.best_model)
    module.eval()
    best = state.best_score if evaluate is not None else None
    return TrainResult(
        best,
        state.best_step,
        state.global_step,
        state.history,
        state.losses,
        time.perf_counter() - start,
        precision,
    )


def _backward_step(
    module: torch.nn.Module,
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    max_grad_norm: float,
) -> None:
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
