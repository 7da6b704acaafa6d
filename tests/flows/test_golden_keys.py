"""Stores written before the two flows became one come back fully cached, with the same bytes.

`golden/keys-<CPU signature>.json` holds, for six tiny runs (self-distillation with and without a dev
set, with the quick preset's calibration and start selection, with SimCSE initialisation; mutual
distillation with and without a dev set), every stage key and committed-file digest that the self-
and mutual-distillation flows of commit 51a86cb wrote (tests/flows/golden_runs.py says how). Today's flow must
compute the same keys (so an old store is a cache hit) and write the same files (so recomputing a
stage, here the whole run, writes the same bytes). Dropout masks on the CPU depend on its vendor and
float32 rounding on its vector instructions (tests/flows/golden_runs.py says why), so the pins are per
CPU signature; within one instruction set the stages upstream of any dropout must agree across the
recorded vendors, which a separate test checks on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.flows.golden_runs import (
    FIXED_ROOT,
    GOLDEN,
    RUNS,
    committed_digests,
    cpu_signature,
    prepare_root,
    run_new,
)

RECORDED = {p.stem.removeprefix("keys-"): json.loads(p.read_text()) for p in GOLDEN.glob("keys-*.json")}
SIGNATURE = cpu_signature()


def library_versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "tokenizers", "numpy", "scipy"))


pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(autouse=True)
def legacy_cpu_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pinned runs use precision "auto", which meant fp32 on every CPU before native CPU bf16 was
    used (their keys carry no precision there); keep that meaning so the comparison is like for like."""
    monkeypatch.setenv("TRANS_ENCODER_CPU_BF16", "0")


@pytest.fixture(scope="module")
def models() -> dict[str, Path]:
    models, _ = prepare_root()
    return models


@pytest.mark.parametrize("name", list(RUNS))
def test_keys_and_bytes_equal_the_old_flows(
    name: str, models: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    if SIGNATURE not in RECORDED:
        pytest.skip(
            f"no stage keys pinned for CPU signature {SIGNATURE!r} (dropout masks differ by vendor, float "
            f"rounding by instruction set; pinned: {sorted(RECORDED)}); record them as "
            "tests/flows/golden_runs.py says, from a checkout of 51a86cb on such a machine"
        )
    pinned = RECORDED[SIGNATURE][name]
    data = request.getfixturevalue("data_root") if RUNS[name]["data"] else None
    store = FIXED_ROOT / name / "store"
    summary = run_new(name, models, store, data)
    assert not summary["all_cached"]  # computed here, in an empty store
    got = committed_digests(store)
    assert sorted(got) == sorted(pinned), (
        f"stage keys differ from the pre-merge flows ({SIGNATURE}; {library_versions()}): a CPU whose "
        "kernels round differently, or a library release that computes differently, shows here"
    )
    changed = sorted(k for k in got if got[k] != pinned[k])
    assert not changed, (
        f"outputs differ from the pre-merge flows: {changed} ({SIGNATURE}; {library_versions()}: a library "
        "release that computes differently shows here, see README, Guarantees)"
    )
    again = run_new(name, models, store, data)
    assert again["all_cached"]


def test_pins_of_every_vendor_agree_upstream_of_dropout() -> None:
    """Within one instruction set the vendors' pins differ only where dropout enters: each run's pair
    ingestion agrees in all, and so do the start model's labels and evaluation except where SimCSE
    training comes first. Across instruction sets only the pair ingestion (no float work) agrees."""
    assert {"GenuineIntel-AVX512", "AuthenticAMD-AVX512", "AuthenticAMD-AVX2"} <= set(RECORDED)
    isas = {signature.rsplit("-", 1)[1] for signature in RECORDED}
    for name in RUNS:
        every = [RECORDED[s][name] for s in sorted(RECORDED)]
        assert len({len(p) for p in every}) == 1, name  # the same stages ran everywhere
        assert "ingest_pairs" in _shared_stages(every), name
        for isa in sorted(isas):
            pins = [RECORDED[s][name] for s in sorted(RECORDED) if s.endswith(f"-{isa}")]
            if len(pins) < 2:
                continue  # one vendor recorded for this instruction set: nothing to compare
            stages = _shared_stages(pins)
            if RUNS[name]["shared"].get("init_method") != "simcse":
                assert {"bi_scores", "evaluate"} <= stages, (name, isa)
            assert not {"train_cross", "train_bi", "cross_scores"} & stages, (name, isa)


def _shared_stages(pins: list[dict[str, str]]) -> set[str]:
    """The stages with an output of the same key and digest in every one of `pins`."""
    shared = set.intersection(*({f"{k}={d}" for k, d in p.items()} for p in pins))
    return {entry.split("/", 1)[0] for entry in shared}
