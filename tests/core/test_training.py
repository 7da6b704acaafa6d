"""The training loop and the two distillation steps (trans_encoder_core.training / .distillation).

algorithm.md §1.4 B/D and §2.1: AdamW without decay on biases and LayerNorm, linear warmup and decay,
evaluation every `eval_steps` (restarting each epoch) and at epoch ends, best-dev weights returned,
and an exact resume from a checkpoint taken at any step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from tests.tiny import CORPUS, make_tiny_model
from trans_encoder_core.benchmarks import LabelledPairs
from trans_encoder_core.checkpointing import pack_train_state, unpack_train_state
from trans_encoder_core.config import (
    BiEncoderConfig,
    CrossEncoderConfig,
    FitConfig,
    bi_fit_defaults,
    cross_fit_defaults,
)
from trans_encoder_core.distillation import cross_training_examples, train_bi_encoder, train_cross_encoder
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.evaluation import bi_scorer, cross_scorer, dev_evaluator
from trans_encoder_core.training import (
    TrainState,
    copy_state_into,
    cpu_state,
    epoch_order,
    fit,
    linear_schedule,
    make_optimizer,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _toy_problem(n: int, seed: int = 0) -> tuple[torch.nn.Module, callable]:
    """A linear regression module and its `step_loss`."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
    torch.manual_seed(seed)
    module = torch.nn.Linear(4, 1)

    def step_loss(idx: np.ndarray) -> torch.Tensor:
        return ((module(x[idx]).squeeze(-1) - y[idx]) ** 2).mean()

    return module, step_loss


def _cfg(**kw: object) -> FitConfig:
    values: dict[str, object] = {"learning_rate": 0.05, "batch_size": 2, "epochs": 2, "precision": "fp32"}
    return FitConfig(**{**values, **kw})


def _metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    return dict(json.loads(data[8 : 8 + header_len]).get("__metadata__", {}))


def _through_bytes(state: TrainState) -> TrainState:
    """pack → safetensors bytes → unpack, as the task layer stores checkpoints."""
    tensors, meta = pack_train_state(state)
    data = safetensors_save(tensors, metadata=meta)
    return unpack_train_state(safetensors_load(data), _metadata(data))


# --- schedule, optimiser, order -------------------------------------------------------------------------


def test_linear_schedule_warmup_then_decay() -> None:
    f = linear_schedule(total_steps=10, warmup_steps=2)
    assert [f(s) for s in range(11)] == pytest.approx(
        [0, 0.5, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0]
    )
    g = linear_schedule(total_steps=4, warmup_steps=0)  # the bi fit: no warmup
    assert [g(s) for s in range(5)] == pytest.approx([1, 0.75, 0.5, 0.25, 0])
    assert g(7) == 0.0  # never negative
    # The official cross fit: ceil(0.1 * 2318) = 232 warmup steps (algorithm.md §1.4).
    h = linear_schedule(2318, math.ceil(0.1 * 2318))
    assert h(116) == pytest.approx(0.5) and h(232) == 1.0 and h(2318) == 0.0


@pytest.mark.parametrize("kind", ["bi", "cross"])
def test_no_weight_decay_on_bias_and_layer_norm(tiny_model: Path, kind: str) -> None:
    module = (
        BiEncoder.from_pretrained(tiny_model) if kind == "bi" else CrossEncoder.from_pretrained(tiny_model)
    )
    cfg = _cfg(learning_rate=3e-5, weight_decay=0.01)
    opt = make_optimizer(module, cfg)
    names = {id(p): n for n, p in module.named_parameters()}
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(g["lr"] == 3e-5 and g["eps"] == 1e-6 for g in opt.param_groups)
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert decay_names.isdisjoint(no_decay_names)
    assert decay_names | no_decay_names == set(names.values())
    expected = {n for n in names.values() if n.endswith(".bias") or "LayerNorm" in n}
    assert no_decay_names == expected
    assert any("LayerNorm.weight" in n for n in no_decay_names)
    assert all(n.endswith(".weight") and "LayerNorm" not in n for n in decay_names)


def test_epoch_order_is_a_seeded_permutation() -> None:
    a = epoch_order(50, seed=7, epoch=0)
    assert sorted(a.tolist()) == list(range(50))
    np.testing.assert_array_equal(a, epoch_order(50, seed=7, epoch=0))
    assert not np.array_equal(a, epoch_order(50, seed=7, epoch=1))
    assert not np.array_equal(a, epoch_order(50, seed=8, epoch=0))


def test_fit_sees_every_example_once_per_epoch() -> None:
    module, loss = _toy_problem(11)
    seen: list[np.ndarray] = []

    def step_loss(idx: np.ndarray) -> torch.Tensor:
        seen.append(np.array(idx))
        return loss(idx)

    result = fit(module, 11, step_loss, _cfg(batch_size=4, epochs=2, eval_steps=0))
    assert result.steps == 6 and len(result.losses) == 6
    assert [len(s) for s in seen] == [4, 4, 3, 4, 4, 3]
    for epoch in (seen[:3], seen[3:]):
        assert sorted(np.concatenate(epoch).tolist()) == list(range(11))
    assert result.best_score is None and result.history == []
    assert not module.training


def test_fit_rejects_an_empty_training_set() -> None:
    module, loss = _toy_problem(4)
    with pytest.raises(ValueError, match="at least one example, got 0"):
        fit(module, 0, loss, _cfg())


# --- evaluation schedule and best-dev weights ------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "eval_steps", "expected"),
    [
        # 5 steps per epoch, every 2 steps and at the epoch end; the counter restarts each epoch.
        (10, 2, [(0, 2, 2), (0, 4, 4), (0, 5, 5), (1, 2, 7), (1, 4, 9), (1, 5, 10)]),
        # 6 steps per epoch: the epoch end coincides with a multiple and is evaluated once.
        (12, 3, [(0, 3, 3), (0, 6, 6), (1, 3, 9), (1, 6, 12)]),
        (10, 0, [(0, 5, 5), (1, 5, 10)]),  # epoch ends only
        (10, 200, [(0, 5, 5), (1, 5, 10)]),  # interval longer than an epoch
    ],
)
def test_eval_schedule(n: int, eval_steps: int, expected: list[tuple[int, int, int]]) -> None:
    module, loss = _toy_problem(n)
    calls: list[bool] = []

    def step_loss(idx: np.ndarray) -> torch.Tensor:
        assert module.training
        return loss(idx)

    def evaluate() -> float:
        calls.append(module.training or torch.is_grad_enabled())
        return 0.0

    result = fit(module, n, step_loss, _cfg(eval_steps=eval_steps), evaluate=evaluate)
    assert [(p.epoch, p.step, p.global_step) for p in result.history] == expected
    assert calls == [False] * len(expected)  # eval mode, no autograd


def test_best_dev_weights_are_returned() -> None:
    module, loss = _toy_problem(10)
    scripted = iter([math.nan, 0.2, 0.9, 0.9, 0.4, 0.1])  # NaN never wins; ties keep the first
    snapshots: list[dict[str, torch.Tensor]] = []

    def evaluate() -> float:
        snapshots.append(cpu_state(module))
        return next(scripted)

    result = fit(module, 10, loss, _cfg(eval_steps=2), evaluate=evaluate)
    assert len(snapshots) == 6
    assert result.best_score == 0.9 and result.best_step == result.history[2].global_step == 5
    final = module.state_dict()
    for name, value in snapshots[2].items():
        assert torch.equal(final[name], value)
    assert not torch.equal(final["weight"], snapshots[-1]["weight"])  # not the last weights


def test_best_weights_are_copied_into_one_buffer() -> None:
    module, _ = _toy_problem(4)
    best = copy_state_into(None, module)
    storage = best["weight"].data_ptr()
    with torch.no_grad():
        module.weight.add_(1.0)
    again = copy_state_into(best, module)
    assert again is best and again["weight"].data_ptr() == storage
    assert torch.equal(again["weight"], module.weight.detach())
    assert again["weight"].data_ptr() != module.weight.data_ptr()  # a copy, not the live weights


def test_checkpoint_copies_are_released_after_the_callback() -> None:
    module, loss = _toy_problem(8)
    seen: list[TrainState] = []
    fit(module, 8, loss, _cfg(), checkpoint=lambda s: seen.append(_through_bytes(s)) or seen.append(s))
    assert seen[0].model and seen[0].optimizer["state"]  # serialised while they were there
    assert seen[-1].model == {} and seen[-1].optimizer == {}  # the live state holds no copy afterwards


@pytest.mark.parametrize("eval_autocast", [False, True])
def test_eval_autocast_evaluates_in_the_training_precision(eval_autocast: bool) -> None:
    module, loss = _toy_problem(4)
    dtypes: list[torch.dtype] = []

    def evaluate() -> float:
        dtypes.append((torch.ones(2, 2) @ torch.ones(2, 2)).dtype)
        return 0.0

    fit(module, 4, loss, _cfg(precision="bf16", epochs=1), evaluate=evaluate, eval_autocast=eval_autocast)
    fit(module, 4, loss, _cfg(precision="bf16", epochs=1, eval_autocast=eval_autocast), evaluate=evaluate)
    assert dtypes == [torch.bfloat16 if eval_autocast else torch.float32] * 2  # the argument, then the config


def test_our_fit_options_enter_dumps_and_so_keys_only_when_on() -> None:
    plain = _cfg().model_dump()
    assert "packing" not in plain and "eval_autocast" not in plain
    assert _cfg(packing=True, eval_autocast=True).model_dump() | {} == plain | {
        "packing": True,
        "eval_autocast": True,
    }


def test_without_evaluate_the_last_weights_are_kept() -> None:
    module, loss = _toy_problem(10)
    last: list[dict[str, torch.Tensor]] = []
    fit(
        module, 10, loss, _cfg(), checkpoint=lambda s: last.append({k: v.clone() for k, v in s.model.items()})
    )
    assert torch.equal(module.weight.detach(), last[-1]["weight"])


def test_warmup_starts_from_a_zero_learning_rate() -> None:
    module, loss = _toy_problem(10)
    before = cpu_state(module)
    states: list[TrainState] = []
    record = states.append
    fit(
        module,
        10,
        loss,
        _cfg(warmup_ratio=0.3),
        checkpoint=lambda s: record(_through_bytes(s)),
        checkpoint_steps=1,
    )
    assert torch.equal(states[0].model["weight"], before["weight"])  # step 1 ran with lr 0
    assert not torch.equal(states[1].model["weight"], before["weight"])
    assert [s.global_step for s in states] == list(range(1, 11))


def test_fit_learns_the_toy_problem() -> None:
    module, loss = _toy_problem(32)
    result = fit(module, 32, loss, _cfg(learning_rate=0.1, batch_size=8, epochs=20, eval_steps=0))
    assert np.mean(result.losses[-4:]) < 0.1 * np.mean(result.losses[:4])


# --- distillation ----------------------------------------------------------------------------------------


def test_cross_training_examples_both_orders_and_clamp() -> None:
    a, b, y = cross_training_examples(
        ["a", "b"], ["c", "d"], np.array([0.5, -0.2]), both_orders=True, clamp=False
    )
    assert (a, b) == (["a", "b", "c", "d"], ["c", "d", "a", "b"])
    np.testing.assert_array_equal(y, [0.5, -0.2, 0.5, -0.2])
    a, b, y = cross_training_examples(
        ["a", "b"], ["c", "d"], np.array([1.5, -0.2]), both_orders=False, clamp=True
    )
    assert (a, b) == (["a", "b"], ["c", "d"])
    np.testing.assert_array_equal(y, [1.0, 0.0])


def test_distillation_rejects_bad_labels(tiny_bert: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_bert)
    cfg = BiEncoderConfig(fit=bi_fit_defaults(batch_size=2, epochs=1))
    with pytest.raises(ValueError, match="aligned sentence1, sentence2 and score columns, got 2, 2 and 1"):
        train_bi_encoder(bi, ["a", "b"], ["c", "d"], np.array([0.5]), cfg)
    with pytest.raises(ValueError, match="finite pseudo-labels, got nan at row 1"):
        train_bi_encoder(bi, ["a", "b"], ["c", "d"], np.array([0.5, np.nan]), cfg)


def _identical_vs_unrelated() -> tuple[list[str], list[str], np.ndarray]:
    """Learnable targets: 1.0 for a sentence with itself, 0.0 for two unrelated sentences."""
    same = CORPUS[:8]
    first = same + CORPUS[:8]
    second = same + CORPUS[4:12]
    return first, second, np.array([1.0] * 8 + [0.0] * 8, dtype=np.float32)


@pytest.fixture(scope="module")
def trainable_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT with the default small init, which trains smoothly in a few dozen steps."""
    return make_tiny_model("bert", tmp_path_factory.mktemp("trainable") / "bert", seed=0)


def test_bi_distillation_loss_decreases(trainable_bert: Path) -> None:
    bi = BiEncoder.from_pretrained(trainable_bert, pooling="mean")
    first, second, labels = _identical_vs_unrelated()
    cfg = BiEncoderConfig(
        fit=bi_fit_defaults(learning_rate=3e-3, batch_size=8, epochs=6, eval_steps=0, precision="fp32")
    )
    result = train_bi_encoder(bi, first, second, labels, cfg)
    assert result.steps == 12
    assert np.mean(result.losses[-4:]) < 0.5 * np.mean(result.losses[:4])


def test_cross_distillation_loss_decreases(trainable_bert: Path) -> None:
    torch.manual_seed(0)  # the new head's init
    cross = CrossEncoder.from_pretrained(trainable_bert)
    first, second, labels = _identical_vs_unrelated()
    cfg = CrossEncoderConfig(
        fit=cross_fit_defaults(learning_rate=5e-3, batch_size=8, epochs=16, eval_steps=0, precision="fp32")
    )
    result = train_cross_encoder(cross, first, second, labels, cfg)
    assert result.steps == 64  # both orders: 32 examples, 4 steps per epoch
    assert np.mean(result.losses[-4:]) < 0.8 * np.mean(result.losses[:4])


# --- resume ----------------------------------------------------------------------------------------------

DEV = LabelledPairs(
    "dev",
    CORPUS[:6] + CORPUS[:2],
    CORPUS[6:12] + CORPUS[:2],
    np.array([3.0, 1.0, 0.5, 4.0, 2.0, 0.0, 5.0, 5.0]),
)


def _run(
    kind: str, folder: Path, *, resume: TrainState | None = None
) -> tuple[torch.nn.Module, object, list]:
    """A short distillation fit with dropout, dev evaluation and checkpoints every 2 steps."""
    rng = np.random.default_rng(0)
    first, second = CORPUS[:10], CORPUS[2:12]
    labels = rng.uniform(0.0, 1.0, size=10).astype(np.float32)
    checkpoints: list[TrainState] = []
    kwargs = {"checkpoint": lambda s: checkpoints.append(_through_bytes(s)), "checkpoint_steps": 2}
    if kind == "bi":
        module = BiEncoder.from_pretrained(folder, pooling="mean", max_seq_length=16)
        cfg = BiEncoderConfig(
            fit=bi_fit_defaults(learning_rate=1e-3, batch_size=4, epochs=2, eval_steps=2, precision="fp32")
        )
        evaluate = dev_evaluator(bi_scorer(module), DEV)
        result = train_bi_encoder(
            module, first, second, labels, cfg, evaluate=evaluate, resume=resume, **kwargs
        )
    else:
        module = CrossEncoder.from_pretrained(folder, max_length=32)
        cfg = CrossEncoderConfig(
            fit=cross_fit_defaults(learning_rate=1e-3, batch_size=8, epochs=2, eval_steps=2, precision="fp32")
        )
        evaluate = dev_evaluator(cross_scorer(module), DEV)
        result = train_cross_encoder(
            module, first, second, labels, cfg, evaluate=evaluate, resume=resume, **kwargs
        )
    return module, result, checkpoints


@pytest.mark.parametrize("kind", ["bi", "cross"])
def test_resume_reproduces_an_uninterrupted_fit(tiny_model: Path, kind: str) -> None:
    # bi: 10 pairs, batch 4 -> 3 steps/epoch; cross: 20 examples (both orders), batch 8 -> 3 steps/epoch.
    reference, ref_result, checkpoints = _run(kind, tiny_model)
    assert ref_result.steps == 6
    assert [c.global_step for c in checkpoints] == [2, 3, 4, 6]
    assert len(ref_result.history) == 4  # (epoch, step) 2, 3 in each epoch
    assert len(set(ref_result.losses)) > 1
    for checkpoint in (checkpoints[0], checkpoints[2]):  # mid-epoch 0 and mid-epoch 1
        resumed, result, _ = _run(kind, tiny_model, resume=checkpoint)
        assert result.steps == ref_result.steps
        np.testing.assert_allclose(result.losses, ref_result.losses, atol=1e-6, rtol=0)
        assert [p.global_step for p in result.history] == [p.global_step for p in ref_result.history]
        np.testing.assert_allclose(
            [p.score for p in result.history], [p.score for p in ref_result.history], atol=1e-6, rtol=0
        )
        assert result.best_step == ref_result.best_step
        ref_state = reference.state_dict()
        for name, value in resumed.state_dict().items():
            torch.testing.assert_close(value, ref_state[name], atol=1e-6, rtol=0)
