"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

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


def _spread_weights(folder: Path, std: float = 0.4, seed: int = 0) -> Path:
    """Redraw every weight matrix of a saved encoder with a wide normal, in place.

    With the default init (std 0.02) a 32-wide random encoder maps every sentence to nearly the same
    vector (cosines ~0.99999), which would make "same score" checks vacuous; std 0.4 spreads them out.
    """
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT folder (model + WordPiece tokenizer, weights redrawn wide), built once."""
    from tests.tiny import make_tiny_model

    return _spread_weights(make_tiny_model("bert", tmp_path_factory.mktemp("tiny_bert") / "model", seed=0))


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random RoBERTa folder (model + byte-level BPE tokenizer, weights redrawn wide), built once."""
    from tests.tiny import make_tiny_model

    folder = make_tiny_model("roberta", tmp_path_factory.mktemp("tiny_roberta") / "model", seed=1)
    return _spread_weights(folder, seed=1)


@pytest.fixture(scope="session", params=["bert", "roberta"])
def tiny_model(request: pytest.FixtureRequest, tiny_bert: Path, tiny_roberta: Path) -> Path:
    """Each tiny model folder in turn (BERT with token_type_ids, RoBERTa without)."""
    return tiny_bert if request.param == "bert" else tiny_roberta


@pytest.fixture(scope="session")
def tiny_cross_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 1-logit cross-encoder on each tiny model, with a head wide enough that scores differ."""
    import torch

    from trans_encoder_core.encoders import CrossEncoder

    cross = CrossEncoder.from_pretrained(tiny_model)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in cross.model.classifier.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * (1.0 if param.dim() == 2 else 0.1))
    return cross.save(tmp_path_factory.mktemp("tiny_cross") / "model")


@pytest.fixture(scope="module")
def torch_single_thread():
    """Run a test module on one torch thread (use with `pytestmark = pytest.mark.usefixtures(...)`).

    On the shared 2-core machines two threads contend with other work: scoring STS-B test with
    MiniLM took 22 s on 2 threads and 6.5 s on 1; tiny models are pure threading overhead.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
