"""Flatten a `TrainState` into tensors + JSON (for safetensors) and back: no pickle anywhere."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch

from trans_encoder_core.training import EvalPoint, TrainState

_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: str, metadata: Mapping[str, str]) -> None:
    """Write `tensors` (CPU) as a safetensors file, each tensor's bytes straight from its memory.

    The format (an 8-byte little-endian header length, a JSON header of dtype, shape and byte
    offsets, then the tensors' bytes back to back) as `safetensors.torch.save_file` writes it, which
    first copies every tensor into a Python bytes object: for a MiniLM training checkpoint (model,
    best model, two AdamW moments: ~270 MB) 0.85 s against 0.09-0.17 s here on this project's CPU.
    Files are read back with the safetensors library itself (tests compare both writers' files)."""
    header: dict[str, Any] = {}
    offset = 0
    names = sorted(tensors)
    for name in names:
        value = tensors[name]
        if value.dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(
                f"Checkpoint writer expects one of {sorted(map(str, _SAFETENSORS_DTYPES))}, "
                f"got {value.dtype} for {name!r}."
            )
        size = value.numel() * value.element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[value.dtype],
            "shape": list(value.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header["__metadata__"] = dict(metadata)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the tensors' bytes start 8-byte aligned
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)))
        fh.write(head)
        for name in names:
            value = tensors[name].detach().cpu().contiguous()
            if value.numel():
                fh.write(memoryview(value.reshape(-1).view(torch.uint8).numpy()))


def pack_train_state(state: TrainState) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (model, best model, optimiser moments) and a string metadata dict for safetensors."""
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state.model.items():
        tensors[f"model.{name}"] = value.detach().cpu().clone().contiguous()
    for name, value in (state.best_model or {}).items():
        tensors[f"best.{name}"] = value.detach().cpu().clone().contiguous()
    opt_state: dict[str, dict[str, Any]] = {}
    for pid, slots in state.optimizer.get("state", {}).items():
        opt_state[str(pid)] = {}
        for slot, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{slot}"] = value.detach().cpu().clone().contiguous()
            else:
                opt_state[str(pid)][slot] = value
    meta = {
        "global_step": state.global_step,
        "best_score": state.best_score,
        "best_step": state.best_step,
        "has_best": state.best_model is not None,
        "history": [asdict(p) for p in state.history],
        "losses": state.losses,
        "param_groups": state.optimizer.get("param_groups", []),
        "opt_scalars": opt_state,
        "scheduler": state.scheduler,
    }
    return tensors, {"train_state": json.dumps(meta)}


def unpack_train_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> TrainState:
    """Inverse of `pack_train_state`."""
    meta = json.loads(metadata["train_state"])
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} if meta["has_best"] else None
    opt_state: dict[int, dict[str, Any]] = {int(pid): dict(s) for pid, s in meta["opt_scalars"].items()}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, slot = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[slot] = value
    return TrainState(
        global_step=meta["global_step"],
        model=model,
        optimizer={"state": opt_state, "param_groups": meta["param_groups"]},
        scheduler=meta["scheduler"],
        best_model=best,
        best_score=meta["best_score"],
        best_step=meta["best_step"],
        history=[EvalPoint(**p) for p in meta["history"]],
        losses=meta["losses"],
    )
