"""torch's AdamW on the CPU, computed block by block so each block stays in cache (exact).

torch's AdamW on CPU tensors (no `fused`, no `foreach`) runs eight element-wise passes over every
parameter: weight decay, first moment, second moment (two), square root, division, epsilon and the
update. Each pass streams the whole tensor from memory; for all-MiniLM-L6-v2's 11.7 M-element word
embedding that is 47 MB per array and pass, so the optimizer step is bound by memory bandwidth.
`BlockedAdamW` runs the same eight operations, with the same scalars, in the same order, on blocks of
`BLOCK` elements of the flattened tensors: a block's arrays stay in cache from the first pass to the
last. Every operation is element-wise, so each element meets the same arithmetic; the result equals
torch's bit for bit (tests/core/test_blocked_adamw.py checks this against torch.optim.AdamW on model
shapes and odd sizes, and that torch's vector and scalar loops agree, which block edges rely on).

Measured on 2 AVX2 cores (`python bench/optimizer_speed.py --steps 20`, with the kept heap that
training uses): the MiniLM cross-encoder's optimizer step (22.7 M parameters) took 68.1 ms with torch's
loop and 59.3 ms blocked on one thread, 45.6 and 45.7 ms on two (fused: 17.2 / 11.1 ms).

The state (`step`, `exp_avg`, `exp_avg_sq`) is torch's own, so a checkpoint of one loads into the
other and continues identically. Whatever the blocked loop does not cover (amsgrad, maximize,
capturable, differentiable, foreach or fused groups, tensors off the CPU, sparse or complex tensors,
tensor hyperparameters, non-contiguous tensors) goes to torch's own step. TRANS_ENCODER_BLOCKED_ADAMW=0
makes training use torch.optim.AdamW itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch

BLOCK = 1 << 18  # elements per block: five float32 arrays of 1 MB (parameter, gradient, moments, buffer)
BLOCKED_ADAMW_ENV = "TRANS_ENCODER_BLOCKED_ADAMW"


def blocked_adamw_enabled(env: Mapping[str, str] | None = None) -> bool:
    """False when TRANS_ENCODER_BLOCKED_ADAMW=0: training then uses torch.optim.AdamW itself."""
    return (os.environ if env is None else env).get(BLOCKED_ADAMW_ENV, "1").strip() != "0"


def _blockable_group(group: dict[str, Any]) -> bool:
    flags = ("amsgrad", "maximize", "capturable", "differentiable", "foreach", "fused")
    if any(group.get(flag) for flag in flags) or not group.get("decoupled_weight_decay", True):
        return False
    scalars = (group["lr"], *group["betas"], group["eps"], group["weight_decay"])
    return not any(isinstance(value, torch.Tensor) for value in scalars)


def _blockable_param(param: torch.Tensor) -> bool:
    grad = param.grad
    return (
        param.device.type == "cpu"
        and param.is_floating_point()
        and param.is_contiguous()
        and grad is not None
        and grad.layout == torch.strided
        and grad.is_contiguous()
        and grad.dtype == param.dtype
    )


class BlockedAdamW(torch.optim.AdamW):
    """`torch.optim.AdamW`, the default (single-tensor) CPU step computed in cache-sized blocks."""

    def _all_blockable(self) -> bool:
        return all(
            _blockable_group(group)
            and all(_blockable_param(p) for p in group["params"] if p.grad is not None)
            for group in self.param_groups
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        if not self._all_blockable():
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            exp_avgs: list[torch.Tensor] = []
            exp_avg_sqs: list[torch.Tensor] = []
            steps: list[torch.Tensor] = []
            self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, [], steps)  # torch's state
            buffer = torch.empty(0)
            for param, grad, exp_avg, exp_avg_sq, step_t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
                step_t += 1
                if buffer.dtype != param.dtype or buffer.numel() < min(param.numel(), BLOCK):
                    buffer = torch.empty(min(param.numel(), BLOCK), dtype=param.dtype)
                flat = (t.view(-1) for t in (param, grad, exp_avg, exp_avg_sq))
                _update(*flat, buffer, step_scalars(group, step_t.item()))
        return loss


class _StepScalars(NamedTuple):
    decay: float | None  # the weight-decay factor, None without weight decay
    beta2: float
    one_minus_beta1: float
    one_minus_beta2: float
    bias_correction2_sqrt: float
    eps: float
    neg_step_size: float


def step_scalars(group: dict[str, Any], step: float) -> _StepScalars:
    """The Python floats of one step, computed as torch's single-tensor AdamW computes them."""
    lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    decay = 1 - lr * weight_decay if weight_decay != 0 else None
    return _StepScalars(
        decay, beta2, 1 - beta1, 1 - beta2, bias_correction2**0.5, eps, -(lr / bias_correction1)
    )


def _update(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    buffer: torch.Tensor,
    s: _StepScalars,
) -> None:
    """torch's single-tensor AdamW update on 1-D views, `BLOCK` elements at a time."""
    for start in range(0, param.numel(), BLOCK):
        end = start + BLOCK
        p, g, m, v = param[start:end], grad[start:end], exp_avg[start:end], exp_avg_sq[start:end]
        denom = buffer[: p.numel()]
        if s.decay is not None:
            p.mul_(s.decay)
        m.lerp_(g, s.one_minus_beta1)
        v.mul_(s.beta2).addcmul_(g, g, value=s.one_minus_beta2)
        torch.sqrt(v, out=denom)
        denom.div_(s.bias_correction2_sqrt).add_(s.eps)
        p.addcdiv_(m, denom, value=s.neg_step_size)
