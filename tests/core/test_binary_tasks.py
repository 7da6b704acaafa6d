"""MRPC, QNLI and QQP loaders, splits and pools (trans_encoder_core.binary_tasks, algorithm.md §1.7).

MRPC and QNLI tests read the real files (``$TRANS_ENCODER_BINARY_DATA`` or ``../shared/data/binary``)
and skip when they are absent; QQP is not in the shared data, so its tests write files in its format.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from trans_encoder_core.binary_tasks import (
    BINARY_DATA_ENV_VAR,
    BOTH_ORDERS,
    available_binary_tasks,
    binary_eval_sets,
    binary_pool,
    load_binary_task,
    load_mrpc,
    load_qnli,
    load_qqp,
    resolve_binary_root,
)
from trans_encoder_core.errors import BenchmarkDataError, ConfigError
from trans_encoder_core.pairs import pair_id

DEFAULT_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binary"


@pytest.fixture(scope="module")
def binary_root() -> Path:
    """The binary data: ``$TRANS_ENCODER_BINARY_DATA``, else ``../shared/data/binary``; skips if absent."""
    root = resolve_binary_root(None, os.environ)
    origin = (
        f"{BINARY_DATA_ENV_VAR}={root}" if root else f"default {DEFAULT_ROOT} ({BINARY_DATA_ENV_VAR} unset)"
    )
    root = root or DEFAULT_ROOT
    if not root.is_dir():
        pytest.skip(f"binary benchmark data not found: {origin}; see shared/data/binary/README.md")
    return root


def _glue_tsv(path: Path) -> list[tuple[str, str, float]]:
    lines = path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8").splitlines()[1:]
    return [(f[3], f[4], float(f[0])) for f in (line.split("\t") for line in lines)]


def _rows(data) -> list[tuple[str, str, float]]:
    return list(zip(data.sentence1, data.sentence2, data.scores.tolist(), strict=True))


def test_mrpc_matches_glue_split_and_pool(binary_root: Path) -> None:
    splits = load_mrpc(binary_root)
    assert splits.train is not None
    assert _rows(splits.train) == _glue_tsv(binary_root / "mrpc" / "glue" / "train.tsv")
    assert _rows(splits.dev) == _glue_tsv(binary_root / "mrpc" / "glue" / "dev.tsv")
    assert (len(splits.test), int(splits.test.scores.sum())) == (1725, 1147)
    assert '"' in "".join(splits.train.sentence1)  # bare quotes read as text, quoting off
    dev, tests = binary_eval_sets(splits)
    assert dev.metric == tests["mrpc"].metric == "roc_auc" and len(dev.digest) == 64
    table, stats = binary_pool(splits)
    assert stats["n_pairs"] == table.num_rows == 5801 and stats["variant"] == "paper"
    assert stats["sources"] == {"mrpc-train": 3668, "mrpc-dev": 408, "mrpc-test": 1725}
    assert table.column("pair_id")[0].as_py() == pair_id(splits.train.sentence1[0], splits.train.sentence2[0])
    inductive, istats = binary_pool(splits, mode="inductive")
    assert inductive.num_rows == 4076 and istats["excluded"] == ["mrpc-test"]
    assert BOTH_ORDERS["mrpc"] and not BOTH_ORDERS["qnli"]


def test_qnli_flipped_labels_splits_and_dev_only_pool(binary_root: Path) -> None:
    splits = load_binary_task(binary_root, "qnli")
    lines = (binary_root / "qnli" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    gold = [1.0 if line.split("\t")[3] == "entailment" else 0.0 for line in lines]
    assert (len(splits.dev), len(splits.test)) == (1000, 4463)
    np.testing.assert_array_equal(np.concatenate([splits.dev.scores, splits.test.scores]), gold)
    assert splits.dev.sentence1[0] == lines[0].split("\t")[1]  # sentence1 = question
    assert int(sum(gold)) == 2702
    table, stats = binary_pool(splits)
    assert splits.train is None and stats["variant"] == "dev-only" and table.num_rows == 5463
    with pytest.raises(BenchmarkDataError, match=r"expects the file .*qnli/train.tsv, got none"):
        load_qnli(binary_root, with_train=True)


def test_qnli_with_train_file(binary_root: Path, tmp_path: Path) -> None:
    (tmp_path / "qnli").mkdir()
    (tmp_path / "qnli" / "dev.tsv").symlink_to(binary_root / "qnli" / "dev.tsv")
    train = ["index\tquestion\tsentence\tlabel"] + [f"{i}\tq {i}?\ts {i}\tnot_entailment" for i in range(12)]
    (tmp_path / "qnli" / "train.tsv").write_text("\n".join(train) + "\n")
    with pytest.raises(BenchmarkDataError, match=r"at least 10000 pairs in .*train.tsv, got 12"):
        load_qnli(tmp_path)
    splits = load_qnli(tmp_path, check_counts=False)
    table, stats = binary_pool(splits)
    assert stats["variant"] == "paper" and stats["sources"]["qnli-train"] == 12 and table.num_rows == 5475
    assert load_qnli(tmp_path, with_train=False).train is None


def _write_qqp(folder: Path, n: dict[str, int], bad: str | None = None) -> None:
    folder.mkdir(parents=True)
    for split, count in n.items():
        lines = ["qid1\tqid2\tquestion1\tquestion2\tis_duplicate"]
        lines += [
            f'{i}\t{i + 1}\tWhat is "{split} {i}?\t{split} {i} means what?\t{i % 2}' for i in range(count)
        ]
        if bad and split == "dev":
            lines[2] = lines[2].rsplit("\t", 1)[0] + "\t" + bad
        (folder / f"{split}_pairs.tsv").write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")


def test_qqp_first_rows_of_each_split(tmp_path: Path) -> None:
    _write_qqp(tmp_path / "qqp" / "classification", {"train": 6, "dev": 4, "test": 5})
    assert available_binary_tasks(tmp_path)["qqp"] is None
    with pytest.raises(BenchmarkDataError, match=r"at least 10000 pairs in .*train_pairs.tsv, got 6"):
        load_qqp(tmp_path)
    splits = load_qqp(tmp_path, rows={"train": 5, "dev": 2, "test": 3})
    assert splits.train is not None and len(splits.train) == 5
    assert splits.dev.sentence1 == ['What is "dev 0?', 'What is "dev 1?'] and splits.dev.scores.tolist() == [
        0,
        1,
    ]
    assert splits.test.sentence2[-1] == "test 2 means what?" and splits.test.name == "qqp-test"
    table, stats = binary_pool(splits)
    assert table.num_rows == 10 and stats["n_duplicates"] == 0


def test_qqp_in_the_flat_layout_and_bad_label(tmp_path: Path) -> None:
    _write_qqp(tmp_path / "qqp", {"train": 2, "dev": 2, "test": 2}, bad="yes")
    with pytest.raises(
        BenchmarkDataError, match=r"label in \['0', '1'\] at line 3 of .*dev_pairs.tsv, got 'yes'"
    ):
        load_binary_task(tmp_path, "qqp", check_counts=False)


def test_mrpc_errors_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "mrpc"
    folder.mkdir()
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    (folder / "msr_paraphrase_train.txt").write_text(f"{header}\n1\t1\t2\ta\tb\n0\t3\t4\tc\td\n")
    (folder / "msr_paraphrase_test.txt").write_text(f"{header}\n1\t5\t6\te\tf\n")
    (folder / "dev_ids.tsv").write_text("3\t4\n9\t9\n")
    with pytest.raises(
        BenchmarkDataError, match=r"expects 2 dev ids found in the train file in .*dev_ids.tsv, got 1"
    ):
        load_mrpc(tmp_path, check_counts=False)
    (folder / "dev_ids.tsv").write_text("3\t4\n")
    splits = load_mrpc(tmp_path, check_counts=False)
    assert splits.dev.sentence1 == ["c"] and splits.train is not None and splits.train.sentence1 == ["a"]
    with pytest.raises(BenchmarkDataError, match=r"expects 4076 pairs in .*msr_paraphrase_train.txt, got 2"):
        load_mrpc(tmp_path)
    (folder / "msr_paraphrase_test.txt").write_text("Quality\tid\tid2\ts1\ts2\n1\t5\t6\te\tf\n")
    with pytest.raises(BenchmarkDataError, match=r"header columns .*\(missing \['#1 ID', '#2 ID'"):
        load_mrpc(tmp_path, check_counts=False)


def test_roots_tasks_and_availability(tmp_path: Path) -> None:
    assert resolve_binary_root(str(tmp_path), {BINARY_DATA_ENV_VAR: "/x"}) == tmp_path
    assert resolve_binary_root(None, {BINARY_DATA_ENV_VAR: "/data/bin"}) == Path("/data/bin")
    assert resolve_binary_root(None, {}) is None
    status = available_binary_tasks(tmp_path)
    assert set(status) == {"mrpc", "qnli", "qqp"} and all(status.values())
    with pytest.raises(ConfigError, match="expect a task in"):
        load_binary_task(tmp_path, "rte")
    with pytest.raises(ConfigError, match="mode 'transductive' or 'inductive'"):
        binary_pool(_load_qqp_tiny(tmp_path), mode="all")  # type: ignore[arg-type]


def _load_qqp_tiny(tmp_path: Path):
    _write_qqp(tmp_path / "tiny" / "qqp", {"train": 2, "dev": 2, "test": 2})
    return load_qqp(tmp_path / "tiny", check_counts=False)
