"""Devices, precision, seeding (trans_encoder_core.runtime) and the typed config's official defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

from tests.tiny import CORPUS
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig, FitConfig
from trans_encoder_core.encoders import BiEncoder
from trans_encoder_core.runtime import (
    autocast,
    cpu_has_native_bf16,
    eval_mode,
    legacy_precision,
    precision_key,
    resolve_device,
    resolve_precision,
    step_seed,
)
from trans_encoder_core.scoring import bi_scores

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_resolve_precision_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, native_cpu_bf16=False) == "fp32"
    assert resolve_precision("auto", cpu, native_cpu_bf16=True) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    for explicit in ("fp32", "bf16"):
        assert resolve_precision(explicit, cpu, native_cpu_bf16=True) == explicit
        assert resolve_precision(explicit, cpu, native_cpu_bf16=False) == explicit
    with pytest.raises(ValueError, match="'fp16' expects a CUDA device"):
        resolve_precision("fp16", cpu)


def test_native_bf16_follows_the_cpu_flags() -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        assert cpu_has_native_bf16()
    elif flags and "avx512" not in flags:
        assert not cpu_has_native_bf16()


def test_precision_key_only_where_auto_changed_meaning() -> None:
    cpu = torch.device("cpu")
    assert legacy_precision("auto", cpu) == "fp32"
    assert precision_key("fp32", cpu) is None and precision_key("bf16", cpu) is None
    assert precision_key("auto", cpu) == (None if resolve_precision("auto", cpu) == "fp32" else "bf16")


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="expects an available GPU"):
            resolve_device("cuda")


def test_autocast_and_eval_mode() -> None:
    cpu = torch.device("cpu")
    with autocast("fp32", cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast("bf16", cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    module = torch.nn.Sequential(torch.nn.Dropout(0.5))
    module.train()
    with eval_mode(module):
        assert not module.training and not module[0].training
    assert module.training and module[0].training


def test_step_seeds_are_distinct() -> None:
    seeds = {step_seed(2021, s) for s in range(10_000)}
    assert len(seeds) == 10_000
    assert step_seed(2021, 5) != step_seed(2022, 5)


def test_bf16_scoring_is_close_to_fp32(tiny_bert: Path) -> None:
    bi = BiEncoder.from_pretrained(tiny_bert, pooling="mean")
    fp32 = bi_scores(bi, CORPUS[:6], CORPUS[6:])
    bf16 = bi_scores(bi, CORPUS[:6], CORPUS[6:], precision="bf16")
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, fp32, atol=0.05)


def test_config_defaults_are_the_official_values() -> None:
    bi, cross = BiEncoderConfig(), CrossEncoderConfig()
    assert (bi.model, bi.pooling, bi.max_seq_length) == ("packaged", "auto", 32)
    assert (bi.fit.learning_rate, bi.fit.batch_size, bi.fit.epochs, bi.fit.warmup_ratio) == (
        5e-5,
        128,
        10,
        0.0,
    )
    assert (cross.max_length, cross.eval_max_length, cross.both_orders) == (64, 512, True)
    assert (cross.symmetric_labels, cross.clamp_targets) == (False, False)
    assert (cross.fit.learning_rate, cross.fit.batch_size, cross.fit.epochs) == (2e-5, 32, 1)
    assert cross.fit.warmup_ratio == 0.1
    for fit in (bi.fit, cross.fit):
        assert (fit.weight_decay, fit.adam_eps, fit.max_grad_norm, fit.eval_steps, fit.seed) == (
            0.01,
            1e-6,
            1.0,
            200,
            2021,
        )


def test_config_is_frozen_and_strict() -> None:
    with pytest.raises(pydantic.ValidationError, match="extra"):
        FitConfig(learning_rate=1e-5, batch_size=8, epochs=1, learning_rat=3)
    with pytest.raises(pydantic.ValidationError, match="greater than 0"):
        FitConfig(learning_rate=1e-5, batch_size=0, epochs=1)
    cfg = BiEncoderConfig()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.max_seq_length = 64  # type: ignore[misc]
