"""TrainState ⇄ safetensors (trans_encoder_core.checkpointing): a lossless round trip, no pickle."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from trans_encoder_core.checkpointing import pack_train_state, unpack_train_state
from trans_encoder_core.config import FitConfig
from trans_encoder_core.training import EvalPoint, TrainState, fit, make_optimizer

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    return dict(json.loads(data[8 : 8 + header_len]).get("__metadata__", {}))


def _roundtrip(state: TrainState) -> TrainState:
    tensors, meta = pack_train_state(state)
    assert all(isinstance(v, str) for v in meta.values())
    data = safetensors_save(tensors, metadata=meta)
    return unpack_train_state(safetensors_load(data), _metadata(data))


def _module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 1))


def _assert_tensors_equal(a: dict[str, torch.Tensor] | None, b: dict[str, torch.Tensor] | None) -> None:
    assert (a is None) == (b is None)
    if a is None or b is None:
        return
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def _assert_states_equal(got: TrainState, want: TrainState) -> None:
    assert got.global_step == want.global_step
    assert got.best_step == want.best_step
    assert got.best_score == want.best_score or (math.isnan(got.best_score) and math.isnan(want.best_score))
    assert got.history == want.history
    assert got.losses == want.losses
    assert got.scheduler == json.loads(json.dumps(want.scheduler))
    _assert_tensors_equal(got.model, want.model)
    _assert_tensors_equal(got.best_model, want.best_model)
    # Optimiser: param groups equal up to JSON (tuples become lists), every slot equal.
    assert got.optimizer["param_groups"] == json.loads(json.dumps(want.optimizer["param_groups"]))
    assert got.optimizer["state"].keys() == want.optimizer["state"].keys()
    for pid, slots in want.optimizer["state"].items():
        assert got.optimizer["state"][pid].keys() == slots.keys()
        for slot, value in slots.items():
            other = got.optimizer["state"][pid][slot]
            if torch.is_tensor(value):
                assert torch.equal(other, value) and other.dtype == value.dtype, (pid, slot)
            else:
                assert other == value


def test_pack_unpack_roundtrip_of_a_real_fit_state() -> None:
    module = _module()
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    y = x.sum(1)
    scores = iter([0.3, 0.7, 0.5, 0.6, 0.2, 0.1])
    seen: list[tuple[TrainState, TrainState]] = []

    def step_loss(idx: np.ndarray) -> torch.Tensor:
        return ((module(x[idx]).squeeze(-1) - y[idx]) ** 2).mean()

    def checkpoint(state: TrainState) -> None:
        seen.append((_roundtrip(state), copy.deepcopy(state)))

    cfg = FitConfig(
        learning_rate=0.01, batch_size=4, epochs=2, eval_steps=2, warmup_ratio=0.2, precision="fp32"
    )
    fit(module, 12, step_loss, cfg, evaluate=lambda: next(scores), checkpoint=checkpoint, checkpoint_steps=1)
    assert len(seen) == 6
    for got, want in seen:
        _assert_states_equal(got, want)
    last, _ = seen[-1]
    assert last.best_model is not None and last.best_score == 0.7
    assert last.history[1] == EvalPoint(epoch=0, step=3, global_step=3, score=0.7)
    # The unpacked optimiser and scheduler states load into fresh objects.
    fresh = _module()
    fresh.load_state_dict(last.model)
    opt = make_optimizer(fresh, cfg)
    opt.load_state_dict(last.optimizer)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    sched.load_state_dict(last.scheduler)
    assert sched.last_epoch == 6


def test_roundtrip_without_best_model_and_with_infinite_score() -> None:
    module = _module()
    opt = torch.optim.AdamW(module.parameters(), lr=0.1)
    state = TrainState(
        global_step=0,
        model={k: v.clone() for k, v in module.state_dict().items()},
        optimizer=opt.state_dict(),
        scheduler={},
        best_model=None,
        best_score=-math.inf,
        best_step=-1,
    )
    got = _roundtrip(state)
    _assert_states_equal(got, state)
    assert got.best_model is None and got.best_score == -math.inf and got.history == [] and got.losses == []


def test_packed_tensors_are_independent_copies() -> None:
    module = _module()
    model = {k: v for k, v in module.state_dict().items()}  # views of the live weights
    state = TrainState(1, model, {"state": {}, "param_groups": []}, {}, None, 0.0, 0)
    tensors, _ = pack_train_state(state)
    with torch.no_grad():
        module[0].weight.add_(1.0)
    assert not torch.equal(tensors["model.0.weight"], module[0].weight)


def test_checkpoint_writer_files_read_back_as_safetensors_writes_them(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from trans_encoder_core.checkpointing import write_safetensors

    gen = torch.Generator().manual_seed(0)
    tensors = {
        "w": torch.randn(7, 5, generator=gen),
        "bf16": torch.randn(3, 4, generator=gen).to(torch.bfloat16),
        "step": torch.tensor(12.0),  # 0-dim, as AdamW's step counters
        "empty": torch.zeros(0, 4),
        "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "mask": torch.tensor([True, False, True]),
        "strided": torch.randn(6, 4, generator=gen).t(),  # not contiguous
    }
    meta = {"train_state": '{"global_step": 3}'}
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    write_safetensors(tensors, str(ours), meta)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(theirs), metadata=meta)
    got, want = load_file(str(ours)), load_file(str(theirs))
    assert got.keys() == want.keys() == tensors.keys()
    for name, value in tensors.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape
        assert torch.equal(got[name], value) and torch.equal(got[name], want[name])
    data = ours.read_bytes()
    assert _metadata(data) == meta
    assert int.from_bytes(data[:8], "little") % 8 == 0  # tensor bytes start aligned


def test_checkpoint_writer_names_an_unsupported_dtype(tmp_path: Path) -> None:
    from trans_encoder_core.checkpointing import write_safetensors

    with pytest.raises(ValueError, match="complex64 for 'z'"):
        write_safetensors({"z": torch.zeros(2, dtype=torch.complex64)}, str(tmp_path / "x"), {})
