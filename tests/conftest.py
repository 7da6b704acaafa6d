"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data" / "sts"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The benchmark folder: ``$TRANS_ENCODER_DATA``, else ``../shared/data/sts``; skips if absent."""
    from trans_encoder_core.benchmarks import DATA_ENV_VAR, resolve_data_root

    root = resolve_data_root(None, os.environ)
    if root is None:
        root = DEFAULT_DATA_ROOT
        origin = f"default {root} ({DATA_ENV_VAR} unset)"
    else:
        origin = f"{DATA_ENV_VAR}={root}"
    if not root.is_dir():
        pytest.skip(f"benchmark data not found: {origin}; see data/README.md")
    return root
