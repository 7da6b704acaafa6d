"""bench/identical_work.py's variants are valid `self-distill` options that set what their names say."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(_BENCH) not in sys.path:
    sys.path.append(str(_BENCH))  # bench/ is not a package; appended so it never shadows anything

import identical_work  # noqa: E402

from flows.cli import build_parser  # noqa: E402
from flows.cli_distill import build_config  # noqa: E402


@pytest.mark.parametrize("name", sorted(identical_work.VARIANTS))
def test_each_variant_sets_its_options_on_both_encoders(name: str) -> None:
    args = build_parser().parse_args(["self-distill", "--preset", "paper", *identical_work.VARIANTS[name]])
    (plm,) = build_config(args, max_plms=1).plms
    for encoder in (plm.bi, plm.cross):
        assert (encoder.fit.precision == "fp32") == name.startswith("fp32")
        assert encoder.fit.packing == ("packing" in name)
        assert encoder.fit.fast_dropout == encoder.fit.fused_optimizer == ("fast" in name)
        assert encoder.fit.eval_autocast == ("bf16-scoring" in name)
        assert (encoder.score_precision == "auto") == ("bf16-scoring" in name)


def test_only_the_glibc_heap_variant_changes_the_environment() -> None:
    assert set(identical_work.VARIANT_ENV) == {n for n in identical_work.VARIANTS if "glibc-heap" in n}
    for name, env in identical_work.VARIANT_ENV.items():
        assert env == {"TRANS_ENCODER_KEEP_HEAP": "0"}
        # the A/B pair differs in the environment only
        assert identical_work.VARIANTS[name] == identical_work.VARIANTS[name.removesuffix("+glibc-heap")]
