"""BlockedAdamW equals torch.optim.AdamW bit for bit: steps, state, checkpoints, fits."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import trans_encoder_core.blocked_adamw as blocked
from tests.tiny import CORPUS
from trans_encoder_core.blocked_adamw import BLOCKED_ADAMW_ENV, BlockedAdamW, blocked_adamw_enabled
from trans_encoder_core.config import CrossEncoderConfig, FitConfig, cross_fit_defaults
from trans_encoder_core.distillation import train_cross_encoder
from trans_encoder_core.encoders import CrossEncoder
from trans_encoder_core.training import _NO_DECAY, make_optimizer

# odd lengths and shapes, against a small block so most tensors span several blocks with a short last one
SHAPES = [(1,), (7,), (97,), (33, 29), (300, 5), (1000,), (4, 3, 50)]
SMALL_BLOCK = 96


@pytest.fixture
def small_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocked, "BLOCK", SMALL_BLOCK)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request: pytest.FixtureRequest):
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in SHAPES]


def _groups(params: list[torch.nn.Parameter]) -> list[dict]:
    return [{"params": params[::2], "weight_decay": 0.01}, {"params": params[1::2], "weight_decay": 0.0}]


def _set_grads(params: list[torch.nn.Parameter], step: int) -> None:
    gen = torch.Generator().manual_seed(1000 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 10.0 ** float(torch.randint(-5, 1, (), generator=gen))


def _factor(step: int) -> float:
    return (step + 1) / 3 if step < 2 else 1.0 - step / 20  # warmup then decay: lr changes every step


def _train(
    optimizer_class: type,
    params: list[torch.nn.Parameter],
    steps: int,
    *,
    start: int = 0,
    state=None,
    **options,
) -> torch.optim.Optimizer:
    """`steps` steps from step `start` (with `state` = (optimizer, schedule) state dicts to continue)."""
    optimizer = optimizer_class(_groups(params), lr=1e-3, eps=1e-6, **options)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _factor)
    if state is not None:
        optimizer.load_state_dict(copy.deepcopy(state[0]))
        schedule.load_state_dict(state[1])
    for step in range(start, start + steps):
        _set_grads(params, step)
        optimizer.step()
        schedule.step()
    optimizer.schedule_state = schedule.state_dict()
    return optimizer


def _assert_same(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer) -> None:
    for p_ours, p_theirs in zip(
        (p for g in ours.param_groups for p in g["params"]),
        (p for g in theirs.param_groups for p in g["params"]),
    ):
        assert torch.equal(p_ours, p_theirs)
        s_ours, s_theirs = ours.state[p_ours], theirs.state[p_theirs]
        assert s_ours.keys() == s_theirs.keys()
        for key in s_ours:
            assert s_ours[key].dtype == s_theirs[key].dtype and torch.equal(s_ours[key], s_theirs[key]), key


@pytest.mark.usefixtures("small_block")
def test_steps_equal_torch_adamw_bit_for_bit(threads: int) -> None:
    theirs = _train(torch.optim.AdamW, _params(), 6)
    ours = _train(BlockedAdamW, _params(), 6)
    assert any(p.numel() > SMALL_BLOCK for p in _params())  # some tensors really are split into blocks
    _assert_same(ours, theirs)


def test_large_tensors_equal_torch_adamw_with_the_real_block(threads: int) -> None:
    # a word-embedding-like matrix over several real blocks and a length that is no multiple of anything
    shapes = [(1200, 384), (blocked.BLOCK * 2 + 12_345,)]
    gen = torch.Generator().manual_seed(3)

    def make() -> list[torch.nn.Parameter]:
        return [
            torch.nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(7))) for s in shapes
        ]

    results = []
    for cls in (torch.optim.AdamW, BlockedAdamW):
        params = make()
        optimizer = cls([{"params": params, "weight_decay": 0.01}], lr=2e-5, eps=1e-6)
        for step in range(3):
            gen.manual_seed(step)
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen) * 1e-3
            optimizer.step()
        results.append(optimizer)
    _assert_same(results[1], results[0])


@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 31, 33, 63, 65, 4099])
def test_torch_vector_and_scalar_loops_agree_on_the_update_ops(n: int) -> None:
    """What makes block edges harmless: an element's result is the same whether torch's vectorised loop
    or its scalar remainder loop computes it (a block edge can move an element from one to the other)."""
    gen = torch.Generator().manual_seed(n)
    a, b = torch.randn(n, generator=gen), torch.randn(n, generator=gen) * 1e-3
    c = torch.rand(n, generator=gen) + 1e-4
    ops = {
        "mul": lambda x, y, z: x.clone().mul_(0.99999),
        "lerp": lambda x, y, z: x.clone().lerp_(y, 0.1),
        "lerp_large_weight": lambda x, y, z: x.clone().lerp_(y, 0.7),
        "addcmul": lambda x, y, z: x.clone().mul_(0.999).addcmul_(y, y, value=0.001),
        "sqrt_div_add": lambda x, y, z: (z.sqrt() / 0.0316).add_(1e-6),
        "addcdiv": lambda x, y, z: x.clone().addcdiv_(y, z, value=-3e-4),
    }
    for name, op in ops.items():
        whole = op(a, b, c)
        one_by_one = torch.cat([op(a[i : i + 1], b[i : i + 1], c[i : i + 1]) for i in range(n)])
        assert torch.equal(whole, one_by_one), name


@pytest.mark.usefixtures("small_block")
@pytest.mark.parametrize("first", ["ours", "torch"])
def test_a_checkpoint_moves_between_the_two_and_continues_identically(first: str) -> None:
    classes = {"ours": BlockedAdamW, "torch": torch.optim.AdamW}
    second = "torch" if first == "ours" else "ours"
    reference = _train(classes[first], _params(), 6)
    params = _params()
    before = _train(classes[first], params, 3)
    moved_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    state = (before.state_dict(), before.schedule_state)
    _assert_same(_train(classes[second], moved_params, 3, start=3, state=state), reference)


@pytest.mark.parametrize("options", [{"amsgrad": True}, {"maximize": True}, {"foreach": True}])
def test_what_the_blocks_do_not_cover_is_torch_s_own_step(options: dict) -> None:
    _assert_same(
        _train(BlockedAdamW, _params(), 4, **options), _train(torch.optim.AdamW, _params(), 4, **options)
    )


def test_make_optimizer_picks_blocked_by_default_torch_when_switched_off_fused_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = torch.nn.Linear(4, 2)
    cfg = FitConfig(learning_rate=1e-3, batch_size=2, epochs=1)
    assert type(make_optimizer(module, cfg)) is BlockedAdamW
    fused = make_optimizer(module, cfg.model_copy(update={"fused_optimizer": True}))
    assert type(fused) is torch.optim.AdamW and fused.param_groups[0]["fused"] is True
    monkeypatch.setenv(BLOCKED_ADAMW_ENV, "0")
    assert type(make_optimizer(module, cfg)) is torch.optim.AdamW
    assert blocked_adamw_enabled({}) and blocked_adamw_enabled({BLOCKED_ADAMW_ENV: "1"})
    assert not blocked_adamw_enabled({BLOCKED_ADAMW_ENV: " 0 "})


def test_a_cross_encoder_fit_is_identical_with_either_optimizer(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, small_block: None
) -> None:
    rng = np.random.default_rng(0)
    first, second = CORPUS[:10], CORPUS[2:12]
    labels = rng.uniform(0.0, 1.0, size=10).astype(np.float32)
    cfg = CrossEncoderConfig(
        max_length=32, fit=cross_fit_defaults(learning_rate=1e-3, batch_size=8, epochs=1, precision="fp32")
    )
    runs = []
    for switch in ("1", "0"):
        monkeypatch.setenv(BLOCKED_ADAMW_ENV, switch)
        torch.manual_seed(0)
        module = CrossEncoder.from_pretrained(tiny_model, max_length=32)
        result = train_cross_encoder(module, first, second, labels, cfg)
        runs.append((result.losses, module.state_dict()))
    (losses_ours, state_ours), (losses_torch, state_torch) = runs
    assert losses_ours == losses_torch and len(losses_ours) == 3
    assert state_ours.keys() == state_torch.keys()
    assert all(torch.equal(state_ours[k], state_torch[k]) for k in state_ours)
    assert any(n for n in state_ours if not any(tag in n for tag in _NO_DECAY))  # decayed weights included
