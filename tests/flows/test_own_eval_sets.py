"""A run with the user's own labelled sets (issue 13): a dev file selects, named test files are
reported with their metric, STS-B dev is then not read, and the files key the stages that use them.
Also MRPC end to end (the paper's binary setting, §1.7) when ../shared/data/binary is present.

Every file is small and written here over the tiny models' vocabulary (tests/tiny.py CORPUS).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import spearmanr

from flows import cli
from tasks.store import Store
from tests.flows.conftest import EXAMPLE_PAIRS, only_model
from tests.tiny import CORPUS
from tests.tiny_data import write_tiny_stsb

pytestmark = pytest.mark.usefixtures("torch_single_thread")
BINARY_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binary"


def labelled_csv(path: Path, n: int, seed: int, binary: bool, label: str = "label") -> Path:
    """`n` pairs over the tiny vocabulary, labelled by word overlap (graded 0-5, or overlap > 0.2)."""
    rng = random.Random(seed)
    lines = [f"sentence1,sentence2,{label}"]
    for i in range(n):
        a, b = rng.choice(CORPUS), rng.choice(CORPUS)
        overlap = len(set(a.split()) & set(b.split())) / len(set(a.split()) | set(b.split()))
        value = int(overlap > 0.2 or i % 7 == 0) if binary else round(5 * overlap + rng.uniform(-0.3, 0.3), 2)
        lines.append(f"{a},{b},{value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def fit_sets(cycles: int = 1, plm: str = "") -> list[str]:
    sets = {
        "checkpoint_steps": "0",
        "bi.fit.epochs": "1",
        "bi.fit.batch_size": "16",
        "bi.fit.eval_steps": "2",
        "cross.fit.batch_size": "16",
        "cross.fit.eval_steps": "2",
        "cross.max_length": "32",
        "cross.eval_max_length": "32",
    }
    sets = {f"{plm}{k}" if k.startswith(("bi.", "cross.")) else k: v for k, v in sets.items()}
    return [
        arg for key, value in {**sets, "cycles": str(cycles)}.items() for arg in ("--set", f"{key}={value}")
    ]


def committed(store: Path, stage: str) -> list[dict[str, Any]]:
    st = Store(str(store))
    return [st.read_commit(str(p))["meta"] for p in sorted((store / "stages" / stage).glob("[!.]*"))]


def test_own_dev_selects_own_tests_are_reported_and_stsb_dev_is_not_read(
    flow_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_tiny_stsb(tmp_path / "sts")
    dev_file = data / "stsb" / "sts-dev.csv"
    dev_file.write_text("not an STS-B file\n")  # parsed or not: a 1-line STS-B dev fails its count check
    dev = labelled_csv(tmp_path / "dev.csv", 40, seed=1, binary=False, label="score")
    support = labelled_csv(tmp_path / "support.csv", 30, seed=2, binary=True, label="score")
    store, summary_path = tmp_path / "store", tmp_path / "summary.json"
    args = ["self-distill", "--store", str(store), "--model", str(flow_model), "--device", "cpu"]
    args += ["--pairs", str(EXAMPLE_PAIRS), "--data", str(data), "--set", 'eval_tasks=["stsb"]']
    args += ["--dev", str(dev), "--test", f"support={support}", "--label-column", "score"]
    args += [*fit_sets(), "--summary", str(summary_path)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads(summary_path.read_text())
    model = only_model(summary)
    start = model["start"]["bi"]
    assert start["metrics"] == {"dev": "spearman", "stsb": "spearman", "support": "roc_auc"}
    assert set(start["test"]) == {"stsb", "support"} and 0 <= start["test"]["support"] <= 100
    assert summary["eval_sets"]["dev"]["name"] == "dev" and "support" in summary["eval_sets"]["tests"]
    assert "metrics: dev Spearman x100" in out and "support ROC-AUC x100" in out

    # The start's dev score is Spearman on the user's dev file, computed independently here.
    from trans_encoder_core.encoders import BiEncoder
    from trans_encoder_core.scoring import bi_scores

    rows = [line.split(",") for line in dev.read_text().splitlines()[1:]]
    enc = BiEncoder.from_pretrained(flow_model).eval()
    cosines = bi_scores(enc, [r[0] for r in rows], [r[1] for r in rows])
    expected = spearmanr(cosines, [float(r[2]) for r in rows]).statistic * 100
    assert start["dev"] == pytest.approx(expected, abs=1e-3)

    # Both training stages selected on the dev file: its digest is their dev input, and their
    # checkpoint scores are on its scale (the best bi/cross dev values come from those fits).
    dev_digest = summary["eval_sets"]["dev"]["digest"]
    for stage in ("train_cross", "train_bi"):
        (meta,) = committed(store, stage)
        assert meta["inputs"]["dev"] == dev_digest
    assert model["cycles"][0]["cross"]["dev"] is not None

    # STS-B dev was neither parsed (the run succeeded) nor fingerprinted: new bytes change no key.
    dev_file.write_text("still not an STS-B file\n")
    assert cli.main(args) == 0
    assert json.loads(summary_path.read_text())["all_cached"]

    # A changed test file recomputes its evaluations only; a changed dev file the training too.
    labelled_csv(support, 30, seed=3, binary=True, label="score")
    assert cli.main(args) == 0
    runs = {(s["name"], s["cycle"]): s["cached"] for s in json.loads(summary_path.read_text())["stages"]}
    assert runs[("train_cross", 1)] and runs[("train_bi", 1)] and not runs[("evaluate", 0)]


def test_the_ui_form_payload_with_dev_and_tests_runs_the_flow(flow_model: Path, tmp_path: Path) -> None:
    """The Prefect form sends the config as JSON: `dev` and `tests` are plain fields of it."""
    from flows.config import DistillConfig
    from flows.distill import distill

    dev = labelled_csv(tmp_path / "dev.csv", 40, seed=4, binary=True)
    mine = labelled_csv(tmp_path / "mine.csv", 30, seed=5, binary=False)
    form = {
        "store": str(tmp_path / "store"),
        "pairs": str(EXAMPLE_PAIRS),
        "data": str(tmp_path / "no-benchmarks"),
        "eval_tasks": [],
        "cycles": 1,
        "checkpoint_steps": 0,
        "dev": {"uri": str(dev)},
        "tests": {"mine": {"uri": str(mine), "metric": "spearman"}},
        "plms": [
            {
                "bi": {
                    "model": str(flow_model),
                    "fit": {"learning_rate": 5e-5, "batch_size": 16, "epochs": 1},
                },
                "cross": {"max_length": 32, "fit": {"learning_rate": 2e-5, "batch_size": 16, "epochs": 1}},
                "device": "cpu",
            }
        ],
    }
    cfg = DistillConfig.model_validate(json.loads(json.dumps(form)))
    summary = distill(cfg)
    model = only_model(summary)
    for entry in (model["start"]["bi"], *model["best"].values()):
        assert entry["metrics"] == {"dev": "roc_auc", "mine": "spearman"}
        assert entry["dev"] is not None and set(entry["test"]) == {"mine"}
    assert model["best"]["bi"]["average"] == model["best"]["bi"]["test"]["mine"]  # the own tests' avg


@pytest.fixture(scope="module")
def binary_root() -> Path:
    root = Path(os.environ.get("TRANS_ENCODER_BINARY_DATA") or BINARY_ROOT)
    if not (root / "mrpc").is_dir():
        pytest.skip(f"binary benchmark data not found: {root}/mrpc (see shared/data/binary/README.md)")
    return root


def test_mrpc_runs_end_to_end_from_the_cli_and_reports_auc(
    binary_root: Path,
    flow_model: Path,
    tiny_sts: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRANS_ENCODER_DATA", raising=False)
    monkeypatch.setenv("TRANS_ENCODER_BINARY_DATA", str(binary_root))
    summary_path = tmp_path / "summary.json"
    args = [
        "distill",
        "--preset",
        "quick-mrpc",
        "--store",
        str(tmp_path / "store"),
        "--model",
        str(flow_model),
    ]
    args += [
        "--device",
        "cpu",
        "--max-pairs",
        "48",
        *fit_sets(plm="plms."),
        "--set",
        "plms.cross.fit.precision=fp32",
    ]
    args += ["--set", "plms.bi.fit.precision=fp32", "--summary", str(summary_path)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads(summary_path.read_text())
    info = summary["eval_sets"]
    assert info["dev"]["metric"] == "roc_auc" and info["dev"]["n"] == 408
    assert info["tests"]["mrpc"]["n"] == 1725
    for entry in (only_model(summary)["start"]["bi"], *only_model(summary)["best"].values()):
        assert entry["metrics"] == {"dev": "roc_auc", "mrpc": "roc_auc"}
        assert 0 <= entry["test"]["mrpc"] <= 100 and 0 <= entry["dev"] <= 100
    assert "mrpc ROC-AUC x100" in out
    pool = summary["stages"][0]
    assert pool["name"] == "ingest_pairs"
    # A binary run reads no STS folder, so pointing $TRANS_ENCODER_DATA at one changes no key.
    monkeypatch.setenv("TRANS_ENCODER_DATA", str(tiny_sts))
    assert cli.main(args) == 0
    assert json.loads(summary_path.read_text())["all_cached"]


def test_binary_presets_are_the_papers_settings_and_qnli_trains_one_order() -> None:
    from flows.config import preset_config

    for task in ("mrpc", "qnli", "qqp"):
        cfg = preset_config(f"paper-{task}")
        (plm,) = cfg.plms
        assert (cfg.binary_task, cfg.cycles, cfg.eval_tasks) == (task, 5, [])
        assert (plm.cross.fit.epochs, plm.bi.fit.epochs) == (3, 15)
        assert plm.cross.both_orders is (task != "qnli")
    quick = preset_config("quick-mrpc")
    assert quick.binary_task == "mrpc" and quick.cycles == 1 and quick.plms[0].bi.fit.precision == "bf16"
    assert preset_config("quick-mrpc", pairs="mine.csv").binary_task is None  # own pairs win


@pytest.mark.parametrize("name", ["dev", "stsb", "stsb_dev", "mrpc", "a/b", ""])
def test_test_set_names_that_would_collide_or_escape_are_rejected(name: str) -> None:
    from pydantic import ValidationError

    from flows.config import DistillConfig

    with pytest.raises(ValidationError, match="tests expects names"):
        DistillConfig(tests={name: {"uri": "x.csv"}})


def test_cli_test_option_expects_name_equals_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["self-distill", "--test", "nofile.csv", "--store", "memory://x"]) == 2
    assert "--test expects NAME=FILE" in capsys.readouterr().err
