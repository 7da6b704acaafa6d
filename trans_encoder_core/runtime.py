"""Devices, precision and seeding: the only place that decides where and how tensors compute."""

from __future__ import annotations

import contextlib
import random
import threading
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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), as oneDNN reports it.

    Without it bf16 is emulated and slower than fp32, so "auto" keeps fp32 there.
    """
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:  # pragma: no cover - a torch build without oneDNN
        return False


def legacy_precision(precision: str, device: torch.device) -> str:
    """The resolution before native CPU bf16 was used: "auto" = bf16 on a bf16 GPU, fp32 elsewhere."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def resolve_precision(precision: str, device: torch.device, *, native_cpu_bf16: bool | None = None) -> str:
    """ "auto" is bf16 autocast on a bf16 GPU or a CPU with native bf16, fp32 elsewhere.

    Args:
        precision: "auto", "fp32", "bf16" or "fp16" (CUDA only); anything but "auto" is returned.
        device: where the model computes.
        native_cpu_bf16: override the CPU check (None: `cpu_has_native_bf16()`).
    """
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("Precision 'fp16' expects a CUDA device; use 'bf16' or 'fp32' on the CPU.")
    if precision == "auto" and device.type == "cpu":
        native = cpu_has_native_bf16() if native_cpu_bf16 is None else native_cpu_bf16
        return "bf16" if native else "fp32"
    return legacy_precision(precision, device)


def precision_key(precision: str, device: torch.device) -> str | None:
    """What a stage key must add for `precision` on `device`: None when "auto" resolves as it did
    before native CPU bf16 (so earlier keys stay valid), else the resolved precision."""
    resolved = resolve_precision(precision, device)
    return None if resolved == legacy_precision(precision, device) else resolved


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


# -- stopping long loops on request ------------------------------------------------------------------
_STOP = threading.Event()


class StopRequested(RuntimeError):
    """A training or scoring loop ended early because `request_stop` was called (e.g. on SIGTERM)."""


def request_stop() -> None:
    """Ask every training and scoring loop of this process to end at its next step or batch."""
    _STOP.set()


def clear_stop() -> None:
    _STOP.clear()


def check_stop(where: str) -> None:
    """Raise `StopRequested` if a stop was requested; called once per step or batch."""
    if _STOP.is_set():
        raise StopRequested(f"stopped on request at {where}")
