"""The `trans-encoder` command line: self-distill in fresh processes, SIGKILL resume, evaluate, score,
data fetch."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flows.cli import main
from flows.data_fetch import read_manifest
from tasks.artifacts import load_checkpoint
from tasks.store import Store
from tests.flows.conftest import EXAMPLE_PAIRS, REPO_ROOT, only_model
from tests.prefect_home import fresh_prefect_home
from tests.tiny_data import spearman_x100


def cli_args(model: Path, store: Path, data_root: Path, *extra: str) -> list[str]:
    return [
        "self-distill",
        "--store",
        str(store),
        "--pairs",
        str(EXAMPLE_PAIRS),
        "--data",
        str(data_root),
        "--model",
        str(model),
        "--cycles",
        "2",
        "--set",
        'eval_tasks=["stsb"]',
        "--set",
        "checkpoint_steps=2",
        "--set",
        "bi.fit.epochs=2",
        "--set",
        "bi.fit.batch_size=8",
        "--set",
        "bi.fit.eval_steps=3",
        "--set",
        "cross.fit.batch_size=8",
        "--set",
        "cross.fit.eval_steps=4",
        "--set",
        "cross.eval_max_length=64",
        *extra,
    ]


def run_cli(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own session; afterwards kill the whole group, so the temporary Prefect server
    of a process that was SIGKILLed cannot outlive the test."""
    environ = {**os.environ, "PREFECT_HOME": str(fresh_prefect_home(home)), "OMP_NUM_THREADS": "1", **env}
    environ.pop("PREFECT_API_URL", None)  # ephemeral mode, as a user without a server
    out, err = home.parent / f"{home.name}.out", home.parent / f"{home.name}.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args],
            cwd=REPO_ROOT,
            env=environ,
            stdout=fo,
            stderr=fe,
            start_new_session=True,
        )
        left = False
        try:
            rc = proc.wait(timeout=600)
            time.sleep(0.5)  # a child's own exit
            left = _group_alive(proc.pid)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    result = subprocess.CompletedProcess(proc.args, rc, out.read_text(), err.read_text())
    result.group_left = left  # a process of the run (e.g. Prefect's temporary server) outlived it
    return result


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def best(summary_file: Path) -> dict[str, object]:
    summary = json.loads(summary_file.read_text())
    return {k: (v["cycle"], v["test"]) for k, v in only_model(summary)["best"].items()}


@pytest.fixture(scope="module")
def reference(flow_model: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted CLI run in a fresh process, which the rerun and the SIGKILL tests compare
    with (one run instead of one per test: each costs a process start and a Prefect server)."""
    root = tmp_path_factory.mktemp("cli-reference")
    args = cli_args(flow_model, root / "store", data_root, "--summary", str(root / "r.json"))
    result = run_cli(args, root / "home")
    assert result.returncode == 0, result.stderr[-3000:]
    return {"args": args, "root": root, "stdout": result.stdout, "summary": root / "r.json"}


def test_rerun_in_a_new_process_and_prefect_db_is_fully_cached(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    assert "best cross" in reference["stdout"] and "start bi" in reference["stdout"]
    args = [*reference["args"][:-1], str(tmp_path / "s2.json")]
    second = run_cli(args, tmp_path / "home2")  # a new process and a new Prefect database
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads((tmp_path / "s2.json").read_text())
    n = len(summary["stages"])
    assert f"stages: {n} ({n} cached)" in second.stdout
    assert best(reference["summary"]) == best(tmp_path / "s2.json")


def test_sigkill_during_training_resumes_from_the_checkpoint(
    reference: dict[str, Any], flow_model: Path, data_root: Path, tmp_path: Path
) -> None:
    args = cli_args(flow_model, tmp_path / "store", data_root, "--summary", str(tmp_path / "s.json"))
    killed = run_cli(args, tmp_path / "home", TRANS_ENCODER_FAULT="train_bi:1:kill")
    assert killed.returncode == -9
    store = Store(str(tmp_path / "store"))
    assert list(Path(store.path(store.uri("checkpoints", "train_bi"))).glob("*/state.safetensors"))
    resumed = run_cli(args, tmp_path / "home")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    stage = next(s for s in summary["stages"] if s["name"] == "train_bi" and s["cycle"] == 1)
    assert not stage["cached"]
    meta = store.read_commit(stage["uri"])["meta"]
    assert meta["metrics"]["resumed_from_step"] == 2  # the first checkpoint (checkpoint_steps=2)
    assert not list(Path(store.path(store.uri("checkpoints", "train_bi"))).glob("*/state.safetensors"))
    assert best(tmp_path / "s.json") == best(reference["summary"])


def test_sigterm_during_training_stops_at_once_and_leaves_a_checkpoint_to_resume_from(
    flow_model: Path, data_root: Path, tmp_path: Path
) -> None:
    """SIGTERM reaches only the main thread; the training thread must not go on to finish (and
    commit) its stage, nor Prefect's temporary server outlive the process."""
    long_bi = ["--set", "bi.fit.epochs=10", "--cycles", "1"]  # 50 steps the thread could go on with
    args = cli_args(
        flow_model, tmp_path / "store", data_root, "--summary", str(tmp_path / "s.json"), *long_bi
    )
    stopped = run_cli(args, tmp_path / "home", TRANS_ENCODER_FAULT="train_bi:1:term")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert stopped.stderr.strip().splitlines()[-1].startswith("error: stopped by SIGTERM;")
    assert not stopped.group_left
    store = Store(str(tmp_path / "store"))
    assert not Path(store.path(store.uri("stages", "train_bi"))).exists(), "the stopped stage went on"
    (checkpoint,) = Path(store.path(store.uri("checkpoints", "train_bi"))).glob("*/state.safetensors")
    uri = store.uri("checkpoints", "train_bi", checkpoint.parent.name, checkpoint.name)
    state = load_checkpoint(store, uri)  # what the rerun resumes from (as the SIGKILL test shows)
    assert state is not None and 2 <= state.global_step < 25, "stopped within a few steps"


def test_an_expected_error_in_a_real_terminal_is_one_line_without_a_traceback(
    flow_model: Path, data_root: Path, tmp_path: Path
) -> None:
    """What a user sees for a bad pair file in a fresh process: Prefect's run log, no traceback, and
    one `error:` line last; nothing is written to the store."""
    args = cli_args(flow_model, tmp_path / "store", data_root)
    args[args.index("--pairs") + 1] = str(tmp_path / "absent.csv")
    result = run_cli(args, tmp_path / "home")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: Pair file {tmp_path / 'absent.csv'} does not exist; check the path or URL passed as --pairs."
    ]
    assert not (tmp_path / "store" / "stages").exists()


def test_evaluate_and_score_commands(
    flow_model: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                str(flow_model),
                "--data",
                str(data_root),
                "--tasks",
                "stsb",
                "--json",
                str(out_json),
                "--store",
                str(tmp_path / "store"),
            ]
        )
        == 0
    )
    results = json.loads(out_json.read_text())
    assert set(results["tasks"]) == {"stsb"}
    assert results["tasks"]["stsb"] == pytest.approx(spearman_x100(flow_model, data_root), abs=1e-6)
    assert "stsb" in capsys.readouterr().out
    out = tmp_path / "scores.parquet"
    assert main(["score", str(EXAMPLE_PAIRS), "--model", str(flow_model), "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 40 and table.column_names[:4] == ["pair_id", "sentence1", "sentence2", "score"]
    capsys.readouterr()
    assert main(["score", str(EXAMPLE_PAIRS), "--model", str(flow_model), "--out", str(out)]) == 2
    assert "refuses to overwrite" in capsys.readouterr().err


@pytest.fixture
def mirror(data_root: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server with the source snapshot's layout, built from the benchmark folder."""
    root = tmp_path / "mirror"
    for entry in read_manifest():
        target = root / entry.remote
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_root / entry.local, target)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_data_fetch_downloads_and_verifies(
    mirror: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, root = mirror
    dest = tmp_path / "sts"
    assert main(["data", "fetch", "--dest", str(dest), "--base-url", url]) == 0
    assert "61 files verified" in capsys.readouterr().out
    from trans_encoder_core.benchmarks import load_stsb

    assert len(load_stsb(dest, "test")) == 1379
    assert main(["data", "fetch", "--dest", str(dest), "--base-url", url]) == 0
    assert "(0 downloaded, 61 kept)" in capsys.readouterr().out
    victim = next(e for e in read_manifest() if e.local == "stsb/sts-dev.csv")
    (root / victim.remote).write_bytes(b"tampered\n")
    fresh = tmp_path / "fresh"
    assert main(["data", "fetch", "--dest", str(fresh), "--base-url", url]) == 2
    err = capsys.readouterr().err
    assert "stsb/sts-dev.csv" in err and "sha256" in err
    assert not (fresh / "stsb" / "sts-dev.csv").exists()


def test_a_published_run_exports_model_cards_that_sentence_transformers_loads(
    flow_model: Path, tiny_sts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--publish` makes a self-distillation run a registry version (once: a rerun publishes nothing
    new); its export carries model cards and loads in sentence-transformers with our scores."""
    import torch
    from sentence_transformers import CrossEncoder as STCross
    from sentence_transformers import SentenceTransformer

    from trans_encoder_core.encoders import BiEncoder, CrossEncoder
    from trans_encoder_core.scoring import bi_scores, cross_scores

    store = tmp_path / "store"
    args = cli_args(flow_model, store, tiny_sts, "--publish", "--cycles", "1", "--run-name", "pub")
    assert main(args) == 0
    assert "registry: version 1 (" in capsys.readouterr().out
    assert main(args) == 0
    assert "registry: version 1 (these models are already registry version 1)" in capsys.readouterr().out
    assert sorted(p.name for p in (store / "registry" / "versions").iterdir()) == ["000001.json"]
    release = tmp_path / "release"
    assert main(["models", "export", "latest", str(release), "--store", str(store)]) == 0
    cards = {kind: (release / kind / "README.md").read_text() for kind in ("bi", "cross")}
    for kind, card in cards.items():
        assert str(flow_model) in card, "the starting model"
        assert "stages/ingest_pairs/" in card and "40 unlabeled sentence pairs" in card, "the pool"
        assert "STS-B dev" in card and "STS-B test" in card, "the metrics per set"
        assert '"publish": true' in card and '"cycles": 1' in card, "the run config"
    assert "stages/train_cross/" in cards["cross"], "the lineage: the store key of the trained model"
    assert "SentenceTransformer(" in cards["bi"] and "CrossEncoder(" in cards["cross"]
    assert "AutoModel" in cards["bi"] and "AutoModelForSequenceClassification" in cards["cross"]
    a, b = ["a man is playing a guitar", "the cat sits"], ["a man plays the guitar", "two dogs run"]
    theirs = SentenceTransformer(str(release / "bi"), device="cpu").encode(a + b, convert_to_tensor=True)
    ours = bi_scores(BiEncoder.from_pretrained(release / "bi"), a, b)
    cosines = torch.nn.functional.cosine_similarity(theirs[:2], theirs[2:]).numpy()
    assert cosines == pytest.approx(ours, abs=1e-5)
    st_cross = STCross(str(release / "cross"), device="cpu").predict(list(zip(a, b, strict=True)))
    ours_cross = cross_scores(CrossEncoder.from_pretrained(release / "cross"), a, b)
    assert st_cross == pytest.approx(ours_cross, abs=1e-5)
