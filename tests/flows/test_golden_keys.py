"""Stores written before the two flows became one come back fully cached, with the same bytes.

`golden/keys.json` holds, for six tiny runs (self-distillation with and without a dev set, with the
quick preset's calibration and start selection, with SimCSE initialisation; mutual distillation with
and without a dev set), every stage key and committed-file digest that the self- and mutual-
distillation flows of commit 51a86cb wrote (tests/flows/golden_runs.py says how). Today's flow must
compute the same keys (so an old store is a cache hit) and write the same files (so recomputing a
stage, here the whole run, writes the same bytes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.flows.golden_runs import FIXED_ROOT, RUNS, committed_digests, prepare_root, run_new

GOLDEN = json.loads((Path(__file__).parent / "golden" / "keys.json").read_text())
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
    data = request.getfixturevalue("data_root") if RUNS[name]["data"] else None
    store = FIXED_ROOT / name / "store"
    summary = run_new(name, models, store, data)
    assert not summary["all_cached"]  # computed here, in an empty store
    got = committed_digests(store)
    assert sorted(got) == sorted(GOLDEN[name]), "stage keys differ from the pre-merge flows"
    changed = sorted(k for k in got if got[k] != GOLDEN[name][k])
    assert not changed, f"outputs differ from the pre-merge flows: {changed}"
    again = run_new(name, models, store, data)
    assert again["all_cached"]
