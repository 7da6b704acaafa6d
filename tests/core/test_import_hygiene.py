"""The core imports neither Prefect nor fsspec (conventions.md §1: the core is pure)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import trans_encoder_core

FORBIDDEN = ("prefect", "fsspec")


def _core_modules() -> list[str]:
    paths = list(trans_encoder_core.__path__)
    return sorted(f"trans_encoder_core.{m.name}" for m in pkgutil.iter_modules(paths))


def test_core_has_the_expected_modules() -> None:
    names = {name.rsplit(".", 1)[1] for name in _core_modules()}
    assert {"encoders", "scoring", "training", "distillation", "checkpointing", "losses"} <= names


def test_importing_the_core_loads_neither_prefect_nor_fsspec() -> None:
    modules = ["trans_encoder_core", *_core_modules()]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
