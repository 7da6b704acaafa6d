"""Devices, precision and seeding: the only place that decides where and how tensors compute."""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

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


# -- inference batches on CPU cores ------------------------------------------------------------------
STREAMS_ENV = "TRANS_ENCODER_SCORE_STREAMS"


def inference_streams(device: torch.device, n_batches: int, env: Mapping[str, str] | None = None) -> int:
    """How many batches `run_batches` computes at once: on the CPU one per intra-op thread (each batch
    on one thread), capped by the batch count; 1 on accelerators. `TRANS_ENCODER_SCORE_STREAMS=N`
    sets N (1: one batch at a time on all threads, as before)."""
    if device.type != "cpu" or n_batches < 2:
        return 1
    value = (os.environ if env is None else env).get(STREAMS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{STREAMS_ENV} expects a whole number of at least 1, got {value!r}.")
        wanted = int(value)
    else:
        wanted = torch.get_num_threads()
    return max(1, min(wanted, n_batches))


def run_batches(
    batches: Sequence[np.ndarray],
    compute: Callable[[np.ndarray], None],
    device: torch.device,
    where: str,
    *,
    streams: int | None = None,
) -> None:
    """Call `compute(idx)` for every batch (it stores its own output), checking for a stop per batch.

    On a CPU with several threads the batches run side by side, each on one thread of its own, instead
    of one after another on all threads: small inference batches (a few thousand tokens, hidden size
    384) keep one core busy well but split poorly over two (measured on 2 cores: bi-encoder encoding
    ~25 % and cross-encoder scoring ~10 % faster, outputs bitwise equal to the one-at-a-time loop).
    A batch's result does not depend on which thread computes it or what runs next to it. The
    caller's autocast, inference and grad modes (thread-local in torch) hold in the workers too.
    `streams` overrides `inference_streams`.
    """
    streams = inference_streams(device, len(batches)) if streams is None else min(streams, len(batches))
    if streams <= 1:
        for idx in batches:
            check_stop(where)
            compute(idx)
        return
    kind = device.type
    cast, dtype = torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()
    pending, lock, failed = iter(batches), threading.Lock(), threading.Event()

    def worker() -> None:
        torch.set_num_threads(1)  # this thread's OpenMP/MKL count (and torch's default for new threads)
        with (
            torch.inference_mode(inference),
            torch.set_grad_enabled(grad),
            torch.autocast(kind, dtype=dtype, enabled=cast),
        ):
            while not failed.is_set():
                with lock:
                    idx = next(pending, None)
                if idx is None:
                    return
                try:
                    check_stop(where)
                    compute(idx)
                except BaseException:
                    failed.set()  # the other workers stop taking batches
                    raise

    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(streams, thread_name_prefix="te-batches") as pool:
            for future in [pool.submit(worker) for _ in range(streams)]:
                future.result()
    finally:
        torch.set_num_threads(threads)  # back to the caller's count, for threads started later too
