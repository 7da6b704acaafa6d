"""The tiny runs whose stage keys and output digests are pinned in `golden/keys-<CPU signature>.json`.

Each `golden/keys-SIGNATURE.json` was written by the self- and mutual-distillation flows of commit
51a86cb (before the two flows became one) with `python -m tests.flows.golden_runs OUT.json DATA_DIR`,
run from a checkout of 51a86cb with this file and `golden/` copied in, on a CPU of that signature;
`test_golden_keys.py` reruns the same configurations through today's flow and requires the same stage
keys and the same committed file digests, i.e. a store written by the old code comes back fully cached
and recomputation writes the same bytes. Each run is described here as plain data so that both the old
and the new configuration classes can be built from it.

Why one file per CPU signature (`cpu_signature`: vendor and the vector instructions torch's kernels
use): torch (2.13, built with MKL) draws CPU dropout masks with MKL's random generator on Intel CPUs
only and with its own generator elsewhere (`bernoulli_scalar_kernel` checks `cpuinfo_vendor_intel`),
so every trained stage, and every key that carries a trained model's digest, differs between an
Intel and an AMD machine although the code and the config are the same; and float32 matrix products
round differently with AVX2 than with AVX-512 kernels, so on an AMD CPU without AVX-512 the start
model's dev evaluations and every trained stage differ from the AVX-512 pins (an AMD EPYC machine of
2026-12-04; the start model's labels happened to agree). Within one instruction set the stages
upstream of any dropout (pair ingestion, the start model's labels and evaluation) are equal for both
vendors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PAIRS = REPO_ROOT / "data" / "examples" / "pairs.csv"

TINY_FIT = {
    "bi": {"epochs": 2, "batch_size": 8, "eval_steps": 3},
    "cross": {"batch_size": 8, "eval_steps": 4},
}

# name -> (kind: "self" | "mutual", uses the benchmark folder, shared overrides, per-PLM overrides)
RUNS: dict[str, dict[str, Any]] = {
    "self-nodata": {"kind": "self", "data": False, "shared": {"cycles": 2}},
    "self-dev": {"kind": "self", "data": True, "shared": {"cycles": 1}},
    "self-quicklike": {
        "kind": "self",
        "data": True,
        "shared": {"cycles": 1, "select_start": True, "bi_label_calibration": "quantile", "seed": 7},
    },
    "self-simcse": {
        "kind": "self",
        "data": False,
        "shared": {"cycles": 1, "init_method": "simcse", "unsup": {"max_sentences": 16}},
    },
    "mutual-nodata": {"kind": "mutual", "data": False, "shared": {"cycles": 1}},
    "mutual-dev": {"kind": "mutual", "data": True, "shared": {"cycles": 1, "bi_label_mix": 0.5}},
}


GOLDEN = Path(__file__).resolve().parent / "golden"
# Model folders and pair files enter the lineage of stage outputs by path, and output digests enter
# the keys of later stages: the pinned runs therefore use one fixed folder on every machine.
FIXED_ROOT = Path("/tmp/te-golden-keys")


def prepare_root() -> tuple[dict[str, Path], Path]:
    """A fresh FIXED_ROOT with the committed tiny models (tests.tiny.make_tiny_model with seeds 3 and
    4, hidden 32; committed because the tokenizer trainer is not deterministic) and the example pairs."""
    import shutil

    shutil.rmtree(FIXED_ROOT, ignore_errors=True)
    FIXED_ROOT.mkdir(parents=True)
    models = {}
    for name in ("bert", "roberta"):
        models[name] = Path(shutil.copytree(GOLDEN / "models" / name, FIXED_ROOT / "models" / name))
    pairs = Path(shutil.copy(EXAMPLE_PAIRS, FIXED_ROOT / "pairs.csv"))
    return models, pairs


def plm_settings(model: Path) -> dict[str, Any]:
    """The bi/cross settings of one tiny PLM as plain data."""
    from trans_encoder_core.config import bi_fit_defaults, cross_fit_defaults

    return {
        "bi": {"model": str(model), "fit": bi_fit_defaults(**TINY_FIT["bi"]).model_dump()},
        "cross": {"eval_max_length": 64, "fit": cross_fit_defaults(**TINY_FIT["cross"]).model_dump()},
    }


def shared_settings(run: dict[str, Any], store: Path, data: Path | None) -> dict[str, Any]:
    return {
        "store": str(store),
        "pairs": str(FIXED_ROOT / "pairs.csv"),
        "data": str(data) if (run["data"] and data) else str(store.parent / "no-benchmarks"),
        "eval_tasks": ["stsb"],
        "checkpoint_steps": 2,
        **run["shared"],
    }


def committed_digests(store: Path) -> dict[str, str]:
    """`stage/key` -> digest of the committed file manifest, for every artifact in the store."""
    from tasks.store import Store

    st = Store(str(store))
    out = {}
    for folder in sorted((store / "stages").glob("*/*")):
        if folder.name.startswith("."):
            continue
        art = st.verify(str(folder))
        if art is not None:
            out[f"{folder.parent.name}/{folder.name}"] = art.digest
    return out


def run_old(name: str, models: dict[str, Path], store: Path, data: Path | None) -> None:
    """Run one configuration through the pre-merge flows (commit 51a86cb)."""
    run = RUNS[name]
    shared = shared_settings(run, store, data)
    if run["kind"] == "self":
        from flows.self_distill import self_distill

        from flows.config import SelfDistillConfig

        self_distill(SelfDistillConfig(**shared, **plm_settings(models["bert"])))
        return
    from flows.mutual_config import MutualDistillConfig
    from flows.mutual_distill import run_mutual
    from prefect.task_runners import ThreadPoolTaskRunner

    plms = [
        {"name": n, "device": "cpu", "seed": 11 + i, **plm_settings(p)}
        for i, (n, p) in enumerate(models.items())
    ]
    run_mutual(MutualDistillConfig(**shared, plms=plms), ThreadPoolTaskRunner(max_workers=1))


def run_new(name: str, models: dict[str, Path], store: Path, data: Path | None) -> dict[str, Any]:
    """Run one configuration through today's distillation flow (one flow for one PLM or several)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.config import DistillConfig, single_plm_config
    from flows.distill import run_distill

    run = RUNS[name]
    shared = shared_settings(run, store, data)
    if run["kind"] == "self":
        config = single_plm_config(**shared, **plm_settings(models["bert"]))
    else:
        plms = [
            {"name": n, "device": "cpu", "seed": 11 + i, **plm_settings(p)}
            for i, (n, p) in enumerate(models.items())
        ]
        config = DistillConfig(**shared, plms=plms)
    return run_distill(config, ThreadPoolTaskRunner(max_workers=1))


def cpu_vendor() -> str | None:
    """The CPU vendor string as Linux reports it (`GenuineIntel`, `AuthenticAMD`, ...), else None."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip() or None
    return None


def cpu_signature() -> str | None:
    """`VENDOR-CAPABILITY`, e.g. `AuthenticAMD-AVX2`: the CPU vendor and the vector instruction set
    torch dispatches its kernels to (`torch.backends.cpu.get_cpu_capability()`); None off Linux."""
    import torch

    vendor = cpu_vendor()
    return f"{vendor}-{torch.backends.cpu.get_cpu_capability()}" if vendor else None


def main(out: str, data: str | None) -> None:
    import os

    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    result: dict[str, Any] = {}
    models, _ = prepare_root()
    for name in RUNS:
        store = FIXED_ROOT / name / "store"
        run_old(name, models, store, Path(data) if data else None)
        result[name] = committed_digests(store)
    Path(out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
