"""Devices, precision and seeding: the only place that decides where and how tensors compute."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" picks the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Device expects an available GPU, got '{device}' on a machine without CUDA; use 'cpu'."
        )
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" is bf16 autocast on a GPU that supports it, fp32 elsewhere (the CPU included)."""
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("Precision 'fp16' expects a CUDA device; use 'bf16' or 'fp32' on the CPU.")
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Autocast context for a resolved precision ("fp32" is a no-op)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def step_seed(seed: int, step: int) -> int:
    """A distinct, reproducible seed per optimiser step (dropout masks do not depend on history)."""
    return (seed * 1_000_003 + step * 7_919) % (2**63 - 1)


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Put a module in eval mode for the block and restore its previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
