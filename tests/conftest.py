"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.tiny_data import MISSING_DATA_REASON, write_tiny_stsb

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per xdist worker (and its subprocesses): with two workers on two cores, a second
    # OpenMP thread per process only spins waiting for a core (see "running the suite" below).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DEFAULT_DATA_ROOT = SHARED / "data" / "sts"
_DATA_SKIPS: list[str] = []
DATA_ENV_HINT = "TRANS_ENCODER_DATA"


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
        pytest.skip(f"{MISSING_DATA_REASON}: {origin}; see data/README.md")
    return root


@pytest.fixture(scope="session")
def tiny_sts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny STS-B-format benchmark folder written by the tests (tests/tiny_data.py): never skips."""
    return write_tiny_stsb(tmp_path_factory.mktemp("tiny-sts"))


def missing_data_skips(reports: list[pytest.TestReport]) -> list[str]:
    """The ids of skipped tests whose reason is missing benchmark data."""
    return [r.nodeid for r in reports if r.skipped and MISSING_DATA_REASON in str(r.longrepr)]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _DATA_SKIPS.extend(missing_data_skips([report]))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a test skipped for missing data although ../shared exists (a CI whose data
    is present must run every data-dependent test, not report green with them skipped)."""
    if _DATA_SKIPS and SHARED.is_dir():
        listed = ", ".join(sorted(set(_DATA_SKIPS))[:5])
        print(
            f"\nerror: {len(set(_DATA_SKIPS))} test(s) skipped for missing benchmark data although "
            f"{SHARED} exists ({listed}); set {DATA_ENV_HINT} or fetch the data (data/README.md).",
            file=sys.stderr,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- running the suite on several workers (pytest-xdist, `make test`) --------------------------------
# Nearly every test runs torch on one thread or waits on a subprocess, so one process keeps about one
# core busy (serially on 2 AVX2 cores: 1,224 s wall, 1,313 s user CPU). `make test` runs two xdist
# workers with `--dist loadscope`, whose scheduler this hook replaces by one that hands out groups:
# - a module's tests together, so module and session fixtures are built once, not once per worker;
# - the modules that share the session's crash-safety reference run as one group: one worker, one run.
# (xdist's own `--dist loadgroup` marks do not group under pytest 9.2: xdist writes the group into
# `item._nodeid`, which pytest no longer reads; pytest-xdist issue #1386.)
SHARED_REFERENCE_MODULES = (
    "tests/flows/test_crash_safety.py",
    "tests/flows/test_concurrency.py",
    "tests/flows/test_s3_store.py",
)


def xdist_group_of(nodeid: str) -> str:
    """The group a test runs in: its module, or one group for the modules sharing the reference run."""
    module = nodeid.split("::", 1)[0]
    return "crash-reference-run" if module in SHARED_REFERENCE_MODULES else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getoption("dist", "no") != "loadscope":
        return None  # xdist's own scheduler for the other modes
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid)

    return ModuleGroups(config, log)


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


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MPNet folder (relative position bias on top of absolute positions), built once."""
    from tests.tiny import make_tiny_model

    return _spread_weights(
        make_tiny_model("mpnet", tmp_path_factory.mktemp("tiny_mpnet") / "model", seed=2), seed=2
    )


def make_tiny_cross(model: Path, out: Path) -> Path:
    """Save a 1-logit cross-encoder on `model` with a head wide enough that scores differ."""
    import torch

    from trans_encoder_core.encoders import CrossEncoder

    cross = CrossEncoder.from_pretrained(model)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in cross.model.classifier.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * (1.0 if param.dim() == 2 else 0.1))
    return cross.save(out)


@pytest.fixture(scope="session", params=["bert", "roberta"])
def tiny_model(request: pytest.FixtureRequest, tiny_bert: Path, tiny_roberta: Path) -> Path:
    """Each tiny model folder in turn (BERT with token_type_ids, RoBERTa without)."""
    return tiny_bert if request.param == "bert" else tiny_roberta


@pytest.fixture(scope="session")
def tiny_cross_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 1-logit cross-encoder on each tiny model, with a head wide enough that scores differ."""
    return make_tiny_cross(tiny_model, tmp_path_factory.mktemp("tiny_cross") / "model")


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


@pytest.fixture(scope="session", autouse=True)
def prefect_console_on_the_session_stream() -> None:
    """Let Prefect bind its console log handlers once, to pytest's session-wide stream.

    `flows.cli.main` sets Prefect's logging up on first use, and the handlers keep the `sys.stderr` of
    that moment. Were that a test's `capsys` stream, it is closed after that test, and every later flow
    run in the process fails while logging (seen when `evaluate` ran in-process before any flow)."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()
