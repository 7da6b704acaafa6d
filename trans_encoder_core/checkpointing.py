"""Flatten a `TrainState` into tensors + JSON (for safetensors) and back: no pickle anywhere."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import torch

from trans_encoder_core.training import EvalPoint, TrainState


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
