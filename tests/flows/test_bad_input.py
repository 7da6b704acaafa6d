"""Bad input at the pipeline level: through the command line (`flows.cli.main`) and the flow.

Every case runs against a store that already holds a finished run (copied per test) and checks:
- the command exits with status 2 and prints one `error: ...` line that names the file, row, field or
  setting, says what was expected, and how to fix it (the core's own messages; tests/core covers their
  details for every format);
- nothing already in the store changed: the file list and every file's sha256 are the same after the
  failed run (and, where the input is rejected before any stage, nothing was added either).
Duplicates, very long sentences and a one-pair pool are not errors: those runs complete.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows import cli
from tasks.store import Store, sha256_file
from tests.flows.conftest import EXAMPLE_PAIRS, only_model
from tests.flows.test_s3_store import tiny_config
from trans_encoder_core.errors import InputDataError, ModelLoadError

pytestmark = pytest.mark.usefixtures("torch_single_thread", "no_benchmark_env")

FIT_SETS = {
    "eval_tasks": '["stsb"]',
    "checkpoint_steps": "0",
    "bi.fit.epochs": "1",
    "bi.fit.batch_size": "16",
    "cross.fit.batch_size": "16",
    "cross.max_length": "32",
    "cross.eval_max_length": "32",
}


def base_args(store: Path, model: Path, pairs: Path | str = EXAMPLE_PAIRS, **sets: str) -> list[str]:
    args = ["self-distill", "--store", str(store), "--model", str(model), "--device", "cpu", "--cycles", "1"]
    if pairs:
        args += ["--pairs", str(pairs)]
    for key, value in {**FIT_SETS, **sets}.items():
        args += ["--set", f"{key}={value}"]
    return args


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path) with its sha256."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def no_benchmark_env() -> Iterator[None]:
    """No benchmark folder unless a test passes --data: evaluation is skipped, runs take seconds."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TRANS_ENCODER_DATA", raising=False)
        yield


@pytest.fixture(scope="module")
def finished_store(
    tmp_path_factory: pytest.TempPathFactory,
    flow_model: Path,
    no_benchmark_env: None,
    torch_single_thread: None,
) -> Path:
    """A store holding one finished run of `base_args` (every later run of it is fully cached)."""
    store = tmp_path_factory.mktemp("finished") / "store"
    assert cli.main(base_args(store, flow_model)) == 0
    return store


@pytest.fixture
def store(finished_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(finished_store, copy)
    return copy


Run = Callable[..., tuple[int, str]]


@contextmanager
def console_output() -> Iterator[io.StringIO]:
    """What Prefect's console handlers (the user's terminal) print meanwhile."""
    from prefect.logging.handlers import PrefectConsoleHandler

    buffer = io.StringIO()
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    saved = [(h.stream, h.console.file) for h in handlers]
    for handler in handlers:
        handler.stream = handler.console.file = buffer
    try:
        yield buffer
    finally:
        for handler, (stream, file) in zip(handlers, saved, strict=True):
            handler.stream, handler.console.file = stream, file


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run the CLI in-process; return its exit code and its last `error:` line ('' if none).

    An exit status 2 (an expected error) must come with exactly one `error:` line and no traceback
    anywhere in the terminal output (the CLI's stderr and Prefect's console log)."""

    def run(args: list[str]) -> tuple[int, str]:
        capsys.readouterr()
        with console_output() as console:
            code = cli.main(args)
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        if code == 2:
            assert len(errors) == 1, err
            terminal = console.getvalue() + err
            assert "Traceback" not in terminal, terminal
            assert "Retry" not in terminal, f"an expected error was retried: {terminal}"
        return code, errors[-1] if errors else ""

    return run


def assert_fails_cleanly(
    run_cli: Run, store: Path, args: list[str], *patterns: str, nothing_added: bool = True
) -> str:
    before = snapshot(store)
    code, error = run_cli(args)
    assert code == 2, f"expected exit status 2 with an error line, got {code}: {error!r}"
    for pattern in patterns:
        assert pattern.lower() in error.lower(), f"{pattern!r} not in {error!r}"
    after = snapshot(store)
    assert {k: after.get(k) for k in before} == before, "a stored file changed or disappeared"
    if nothing_added:
        assert after == before, f"files were added: {sorted(set(after) - set(before))}"
    return error


# -- pair files ------------------------------------------------------------------------------------
def _write(folder: Path, name: str, content: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _parquet(folder: Path, name: str, columns: dict[str, list[Any]]) -> Path:
    path = folder / name
    pq.write_table(pa.table(columns), path)
    return path


GOOD = "A man is playing a guitar.,A man plays the guitar.\nA dog runs.,A dog is running.\n"
PAIR_FILE_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "missing": (lambda d: d / "nope.csv", ("nope.csv", "does not exist", "check the path")),
    "empty": (lambda d: _write(d, "empty.csv", b""), ("empty.csv", "0 bytes", "add a header and pairs")),
    "header only": (
        lambda d: _write(d, "header.csv", "sentence1,sentence2\n"),
        ("header.csv", "at least one data row", "add pairs"),
    ),
    "missing column": (
        lambda d: _write(d, "cols.csv", "sentence1,label\n" + GOOD.replace(",A", ",1 A")),
        ("cols.csv", "missing ['sentence2']", "sentence1_column="),
    ),
    "misnamed columns": (
        lambda d: _write(d, "named.tsv", "Sentence1\tSentence_2\nA man.\tA woman.\n"),
        ("named.tsv", "got columns ['Sentence1', 'Sentence_2']", "rename the columns"),
    ),
    "null sentence": (
        lambda d: _write(
            d,
            "null.jsonl",
            '{"sentence1": "A b.", "sentence2": "C d."}\n{"sentence1": "E f.", "sentence2": null}\n',
        ),
        ("null.jsonl", "'sentence2'", "null", "line 2", "fix or remove that row"),
    ),
    "non-string sentence": (
        lambda d: _write(d, "int.jsonl", '{"sentence1": 42, "sentence2": "C d."}\n'),
        ("int.jsonl", "'sentence1'", "type int", "line 1"),
    ),
    "parquet null": (
        lambda d: _parquet(d, "null.parquet", {"sentence1": ["A b.", None], "sentence2": ["C d.", "E f."]}),
        ("null.parquet", "'sentence1'", "null", "row 1"),
    ),
    "parquet non-string column": (
        lambda d: _parquet(d, "ints.parquet", {"sentence1": [1, 2], "sentence2": ["C d.", "E f."]}),
        ("ints.parquet", "'sentence1'", "type int", "row 0"),
    ),
    "empty sentence": (
        lambda d: _write(d, "blank.csv", "sentence1,sentence2\n" + GOOD + ",A cat.\n"),
        ("blank.csv", "'sentence1'", "empty or whitespace-only", "line 4"),
    ),
    "whitespace-only sentence": (
        lambda d: _write(d, "space.csv", "sentence1,sentence2\nA cat.,   \n"),
        ("space.csv", "'sentence2'", "empty or whitespace-only", "line 2"),
    ),
    "invalid utf-8": (
        lambda d: _write(
            d, "latin1.csv", b"sentence1,sentence2\n" + "Café au lait.,Un café.\n".encode("latin-1")
        ),
        ("latin1.csv", "UTF-8", "0xe9", "line 2", "re-save the file as UTF-8"),
    ),
    "corrupted parquet": (
        lambda d: _write(d, "broken.parquet", EXAMPLE_PAIRS.with_suffix(".parquet").read_bytes()[:-40]),
        ("broken.parquet", "readable Parquet file", "not truncated"),
    ),
    "unknown extension": (
        lambda d: _write(d, "pairs.xlsx", "x"),
        ("pairs.xlsx", "to infer the format", "pass format="),
    ),
}


@pytest.mark.parametrize("case", list(PAIR_FILE_CASES))
def test_bad_pair_file_is_reported_and_the_store_is_untouched(
    case: str, run_cli: Run, store: Path, flow_model: Path, tmp_path: Path
) -> None:
    make, patterns = PAIR_FILE_CASES[case]
    assert_fails_cleanly(run_cli, store, base_args(store, flow_model, make(tmp_path)), *patterns)


def test_bad_pair_file_through_the_flow_raises_input_data_error(
    store: Path, flow_model: Path, tmp_path: Path
) -> None:
    from flows.distill import distill

    before = snapshot(store)
    cfg = tiny_config(str(store), flow_model, None, pairs=str(tmp_path / "absent.parquet"))
    with pytest.raises(InputDataError, match=r"absent\.parquet does not exist; check the path"):
        distill(cfg)
    assert snapshot(store) == before


def test_duplicates_are_counted_and_very_long_sentences_are_truncated_not_fatal(
    run_cli: Run, store: Path, flow_model: Path, tmp_path: Path
) -> None:
    long = " ".join(["a man is playing a guitar on the porch"] * 600)  # ~4,800 words, far over 32 tokens
    rows = ["sentence1,sentence2", f"{long},A man plays the guitar.", "A dog runs.,A dog is running."]
    rows += ["A dog runs.,A dog is running.", "  A dog runs. ,A dog is running.", "A cat sleeps.,A cat naps."]
    pairs = _write(tmp_path, "dups.csv", "\n".join(rows) + "\n")
    before = snapshot(store)
    summary_path = tmp_path / "summary.json"
    args = [*base_args(store, flow_model, pairs), "--summary", str(summary_path), "--run-name", "dups"]
    code, error = run_cli(args)
    assert code == 0, error
    summary = json.loads(summary_path.read_text())
    ingest = Store(str(store)).read_commit(summary["stages"][0]["uri"])
    assert ingest is not None
    metrics = ingest["meta"]["metrics"]
    assert (metrics["n_rows"], metrics["n_duplicates"], metrics["n_pairs"]) == (5, 2, 3)
    table = pq.read_table(Path(Store(str(store)).path(summary["stages"][0]["uri"])) / "pairs.parquet")
    assert long in table["sentence1"].to_pylist(), "the stored pair keeps the whole sentence"
    assert [c["cycle"] for c in only_model(summary)["cycles"]] == [1]
    after = snapshot(store)
    assert {k: after[k] for k in before} == before


def test_a_one_pair_pool_runs_through(run_cli: Run, store: Path, flow_model: Path, tmp_path: Path) -> None:
    pairs = _write(tmp_path, "one.csv", "sentence1,sentence2\nA man plays.,A man is playing.\n")
    summary_path = tmp_path / "summary.json"
    args = [*base_args(store, flow_model, pairs), "--summary", str(summary_path), "--run-name", "one"]
    code, error = run_cli(args)
    assert code == 0, error
    labels = only_model(json.loads(summary_path.read_text()))["cycles"][0]["labels"]
    assert labels["bi"]["n"] == 1 and labels["cross"]["n"] == 1


# -- labelled dev and test files (issue 13) --------------------------------------------------------
LABELLED = "sentence1,sentence2,label\nA man plays.,A man is playing.,1\nA dog runs.,A cat sleeps.,0\n"
LABEL_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...], tuple[str, ...]]] = {
    "missing label": (
        lambda d: _write(d, "dev.csv", LABELLED + "A cat naps.,A cat sleeps.,\n"),
        ("dev.csv", "label column 'label'", "a missing value", "line 4", "fix or remove that row"),
        (),
    ),
    "non-numeric label": (
        lambda d: _write(d, "dev.tsv", LABELLED.replace(",", "\t").replace("\t0\n", "\tno\n")),
        ("dev.tsv", "label column 'label'", "non-numeric value 'no'", "line 3"),
        (),
    ),
    "parquet null label": (
        lambda d: _parquet(
            d,
            "dev.parquet",
            {"sentence1": ["A b.", "C d."], "sentence2": ["E f.", "G h."], "label": [1.0, None]},
        ),
        ("dev.parquet", "label column 'label'", "a missing value", "row 1"),
        (),
    ),
    "not 0/1 for roc_auc": (
        lambda d: _write(d, "dev.csv", LABELLED + "A cat naps.,A cat sleeps.,0.5\n"),
        ("dev.csv", "labels 0 or 1 for metric 'roc_auc'", "got 0.5 at line 4", "use metric 'spearman'"),
        ("--set", "dev.metric=roc_auc"),
    ),
    "dev with one class": (
        lambda d: _write(d, "dev.csv", LABELLED.replace(",0\n", ",1\n")),
        ("dev.csv", "expects both classes 0 and 1", "got only the label 1", "add pairs of the other class"),
        (),
    ),
    "no label column": (
        lambda d: _write(d, "dev.csv", "sentence1,sentence2,score\nA b.,C d.,1\nE f.,G h.,0\n"),
        ("dev.csv", "label column 'label'", "got none", "label_column="),
        (),
    ),
    "missing dev file": (
        lambda d: d / "absent.csv",
        ("absent.csv", "does not exist", "check the path"),
        (),
    ),
}


@pytest.mark.parametrize("case", list(LABEL_CASES))
@pytest.mark.parametrize("role", ["dev", "test"])
def test_bad_labelled_file_is_reported_and_the_store_is_untouched(
    case: str, role: str, run_cli: Run, store: Path, flow_model: Path, tmp_path: Path
) -> None:
    make, patterns, extra = LABEL_CASES[case]
    if role == "test" and case == "dev with one class":
        patterns = patterns[:1] + ("'mine'",) + patterns[1:]
    path = make(tmp_path)
    option = ["--dev", str(path)] if role == "dev" else ["--test", f"mine={path}"]
    extra = tuple(a.replace("dev.", "tests.mine.") for a in extra) if role == "test" else extra
    assert_fails_cleanly(run_cli, store, [*base_args(store, flow_model), *option, *extra], *patterns)


# -- benchmark folders -----------------------------------------------------------------------------
def _stsb_copy(data_root: Path, target: Path) -> Path:
    shutil.copytree(data_root / "stsb", target / "stsb")
    return target


def test_benchmark_folder_with_a_missing_file_names_it(
    run_cli: Run, store: Path, flow_model: Path, tmp_path: Path, data_root: Path
) -> None:
    data = _stsb_copy(data_root, tmp_path / "sts")
    (data / "stsb" / "sts-dev.csv").unlink()
    args = [*base_args(store, flow_model, pairs=""), "--data", str(data), "--set", "pool=stsb"]
    assert_fails_cleanly(run_cli, store, args, "sts-dev.csv", "missing", str(data))


def test_benchmark_folder_with_a_short_file_names_it_and_the_counts(
    run_cli: Run, store: Path, flow_model: Path, tmp_path: Path, data_root: Path
) -> None:
    data = _stsb_copy(data_root, tmp_path / "sts")
    dev = data / "stsb" / "sts-dev.csv"
    dev.write_text("\n".join(dev.read_text().splitlines()[:100]) + "\n")
    args = [*base_args(store, flow_model, pairs=""), "--data", str(data), "--set", "pool=stsb"]
    assert_fails_cleanly(run_cli, store, args, "sts-dev.csv", "expects 1500", "got 100")


# -- models ------------------------------------------------------------------------------------------
def test_model_path_that_does_not_exist(run_cli: Run, store: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    assert_fails_cleanly(
        run_cli, store, base_args(store, missing), str(missing), "does not exist", "check the path"
    )


def test_model_folder_without_tokenizer_files(
    run_cli: Run, store: Path, flow_model: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(flow_model / name, bare / name)
    # The starting models are checked before any stage runs, so nothing is added either.
    assert_fails_cleanly(
        run_cli, store, base_args(store, bare), str(bare), "no tokenizer files", "save the tokenizer"
    )


def test_cross_encoder_checkpoint_with_a_multi_output_head(
    run_cli: Run, store: Path, flow_model: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    head3 = tmp_path / "head3"
    AutoModelForSequenceClassification.from_pretrained(flow_model, num_labels=3).save_pretrained(head3)
    AutoTokenizer.from_pretrained(flow_model).save_pretrained(head3)
    args = [*base_args(store, flow_model), "--cross-model", str(head3)]
    assert_fails_cleanly(
        run_cli, store, args, str(head3), "head with 1 output, got 3", "start from the base encoder"
    )


def test_missing_model_through_the_flow_raises_model_load_error(store: Path, tmp_path: Path) -> None:
    from flows.distill import distill

    before = snapshot(store)
    with pytest.raises(ModelLoadError, match="does not exist"):
        distill(tiny_config(str(store), tmp_path / "absent-model", None))
    assert snapshot(store) == before


# -- configuration and store URLs ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("sets", "patterns"),
    [
        ({"cycles": "0"}, ("cycles", "greater than or equal to 1", "got 0")),
        ({"bi.fit.learning_rate": "-1e-5"}, ("bi.fit.learning_rate", "greater than 0", "got -1e-05")),
        ({"cross.fit.batch_size": "0"}, ("cross.fit.batch_size", "greater than 0", "got 0")),
        ({"bi.fit.batch_size": "0", "max_pairs": "0"}, ("bi.fit.batch_size", "max_pairs")),
        ({"cross.fit.learnig_rate": "1e-4"}, ("learnig_rate", "extra inputs are not permitted")),
        ({"bi.pooling": "max"}, ("bi.pooling", "'auto', 'cls' or 'mean'", "got 'max'")),
    ],
)
def test_out_of_range_config_is_rejected_before_any_stage(
    sets: dict[str, str],
    patterns: tuple[str, ...],
    run_cli: Run,
    store: Path,
    flow_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.distill

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the flow must not start with an invalid configuration")

    monkeypatch.setattr(flows.distill, "run_distill", must_not_run)
    error = assert_fails_cleanly(run_cli, store, base_args(store, flow_model, **sets), *patterns)
    assert "fix them with --set" in error and "Traceback" not in error


def test_unsupported_store_url_scheme(run_cli: Run, store: Path, flow_model: Path, tmp_path: Path) -> None:
    args = base_args(store, flow_model)
    args[args.index("--store") + 1] = "ftp://host/te"
    assert_fails_cleanly(run_cli, store, args, "ftp://host/te", "s3://bucket/prefix")
    assert not (tmp_path / "ftp:").exists() and not Path("ftp:").exists()


def test_invalid_storage_options_in_the_environment(
    run_cli: Run, store: Path, flow_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRANS_ENCODER_STORAGE_OPTIONS", "{not json")
    assert_fails_cleanly(
        run_cli, store, base_args(store, flow_model), "TRANS_ENCODER_STORAGE_OPTIONS", "JSON"
    )


@pytest.mark.parametrize("name", ["../escape", "..", "/etc/te", "a/../../b", ".hidden", "runs/x"])
def test_run_name_that_escapes_the_store_root_is_rejected(
    name: str, run_cli: Run, store: Path, flow_model: Path, tmp_path: Path
) -> None:
    outside = snapshot(tmp_path)
    args = [*base_args(store, flow_model), "--run-name", name]
    assert_fails_cleanly(run_cli, store, args, "run_name", repr(name), "choose a plain name")
    assert snapshot(tmp_path) == outside


def test_pair_file_outside_the_store_is_only_read(
    run_cli: Run, store: Path, flow_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pair path with '..' segments or an absolute path is read; every write stays in the store."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    pairs = outside / "pairs.csv"
    shutil.copy(EXAMPLE_PAIRS, pairs)
    monkeypatch.chdir(store)
    others = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("store/")}
    for ref in ("../elsewhere/pairs.csv", str(pairs.resolve())):
        code, error = run_cli([*base_args(store, flow_model, ref), "--run-name", "outside"])
        assert code == 0, error
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("store/")} == others
    assert (store / "runs" / "outside" / "summary.json").is_file()


# -- a failure after a stage committed ---------------------------------------------------------------
def test_a_failure_after_a_stage_committed_keeps_that_stage_and_changes_nothing_else(
    store: Path, flow_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another cross-encoder learning rate recomputes train_cross, which commits; the next stage then
    fails (an injected error). Every file already stored is byte-identical, the only new files are the
    new train_cross artifact's, and it verifies, so a rerun resumes from it."""
    before = snapshot(store)
    monkeypatch.setenv("TRANS_ENCODER_FAULT", "cross_scores:1")
    args = base_args(store, flow_model, **{"cross.fit.learning_rate": "1e-4"})
    with pytest.raises(Exception, match="injected failure in stage cross_scores"):
        cli.main(args)
    capsys.readouterr()
    after = snapshot(store)
    assert {k: after.get(k) for k in before} == before, "a stored file changed or disappeared"
    added = sorted(set(after) - set(before))
    folders = {tuple(path.split("/")[:3]) for path in added}
    assert len(folders) == 1 and next(iter(folders))[:2] == ("stages", "train_cross"), added
    uri = Store(str(store)).uri(*next(iter(folders)))
    assert Store(str(store)).verify(uri) is not None, "the committed stage is kept whole"
    monkeypatch.delenv("TRANS_ENCODER_FAULT")
    assert cli.main(args) == 0
    train_cross = {p.name for p in (store / "stages" / "train_cross").iterdir()}
    assert train_cross == {key for stage, key in (f.split("/")[1:3] for f in after) if stage == "train_cross"}


# -- failures that used to end in a traceback (issue 15) ----------------------------------------------
def _truncated_copy(model: Path, target: Path) -> Path:
    shutil.copytree(model, target)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return target


def test_store_that_is_a_regular_file_fails_at_once(
    run_cli: Run, store: Path, flow_model: Path, tmp_path: Path
) -> None:
    a_file = tmp_path / "store.txt"
    a_file.write_text("not a store\n")
    args = base_args(store, flow_model)
    args[args.index("--store") + 1] = str(a_file)
    assert_fails_cleanly(run_cli, store, args, str(a_file), "expects a folder", "regular file", "--store")
    assert a_file.read_text() == "not a store\n"


def test_a_path_through_a_file_is_not_retried_and_names_the_path(
    run_cli: Run, store: Path, flow_model: Path, tmp_path: Path
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    args = base_args(store, flow_model)
    args[args.index("--store") + 1] = str(a_file / "store")
    assert_fails_cleanly(run_cli, store, args, str(a_file / "store"), "ENOTDIR", "regular file", "--store")


def test_a_full_disk_during_training_fails_at_once_naming_the_store_and_the_size(
    run_cli: Run, store: Path, flow_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's disk fills while train_cross commits its model: no retry, the store and the size
    the stage needed are named, no partial copy is left and nothing stored changes."""
    import tasks.store

    calls: list[str] = []

    def copy2(src: Any, dst: Any, **kwargs: Any) -> Any:
        if "train_cross" in str(dst):
            calls.append(str(dst))
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return shutil.copy2(src, dst, **kwargs)

    fake = type("FakeShutil", (), {"copy2": staticmethod(copy2), "rmtree": staticmethod(shutil.rmtree)})
    monkeypatch.setattr(tasks.store, "shutil", fake)
    args = base_args(store, flow_model, **{"cross.fit.learning_rate": "1e-4"})  # train_cross recomputes
    before = snapshot(store)
    error = assert_fails_cleanly(
        run_cli,
        store,
        args,
        f"Store {store}",
        "No space left on device",
        "ENOSPC",
        "needs",
        "is free",
        nothing_added=False,
    )
    assert "train_cross" in error and "--store" in error
    assert len(calls) == 1, f"a full disk must not be retried: {calls}"
    added = sorted(set(snapshot(store)) - set(before))  # only the fit's checkpoint: the rerun resumes
    assert [p.split("/")[:2] for p in added] == [["checkpoints", "train_cross"]], added


def test_truncated_starting_weights_fail_before_any_stage(
    run_cli: Run, store: Path, flow_model: Path, tmp_path: Path
) -> None:
    bad = _truncated_copy(flow_model, tmp_path / "truncated")
    weights = str(bad / "model.safetensors")
    assert_fails_cleanly(run_cli, store, base_args(store, bad), weights, "truncated or damaged", "again")
    args = [*base_args(store, flow_model), "--cross-model", str(bad)]  # the cross start is checked too
    assert_fails_cleanly(run_cli, store, args, weights, "truncated or damaged")


def test_evaluate_without_a_benchmark_folder_is_a_usage_error(
    run_cli: Run, store: Path, flow_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.tools

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no flow run starts without a benchmark folder")

    monkeypatch.setattr(flows.tools, "evaluate_model", must_not_run)
    args = ["evaluate", str(flow_model), "--store", str(store)]
    assert_fails_cleanly(run_cli, store, args, "expects a benchmark folder", "--data DIR")


def test_score_with_truncated_weights_names_the_file(
    run_cli: Run, store: Path, flow_model: Path, tmp_path: Path
) -> None:
    bad = _truncated_copy(flow_model, tmp_path / "truncated")
    out = tmp_path / "scores.parquet"
    args = ["score", str(EXAMPLE_PAIRS), "--model", str(bad), "--out", str(out), "--store", str(store)]
    assert_fails_cleanly(run_cli, store, args, str(bad / "model.safetensors"), "truncated or damaged")
    assert not out.exists()


def test_debug_shows_the_traceback_of_an_expected_error(
    store: Path, flow_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = base_args(store, flow_model, tmp_path / "absent.csv")
    capsys.readouterr()
    assert cli.main(["--debug", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "InputDataError" in err
    assert err.splitlines()[-1].startswith("error: ") and "absent.csv" in err.splitlines()[-1]


def test_a_bug_still_shows_its_traceback(
    store: Path, flow_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception is not turned into an error line: it propagates (Python prints it)."""
    monkeypatch.setenv("TRANS_ENCODER_FAULT", "bi_scores:1")  # a RuntimeError, i.e. a bug
    args = base_args(store, flow_model, **{"bi.max_seq_length": "24"})
    with console_output() as console, pytest.raises(RuntimeError, match="injected failure"):
        cli.main(args)
    assert "Traceback" in console.getvalue()


def test_the_failed_flow_run_carries_the_error_line_as_its_state_message(
    store: Path, flow_model: Path, tmp_path: Path
) -> None:
    """What the UI shows: the run ends Failed, and its state message holds the same one line."""
    from flows.distill import distill

    cfg = tiny_config(str(store), flow_model, None, pairs=str(tmp_path / "absent.parquet"))
    state = distill(cfg, return_state=True)
    assert state.is_failed()
    assert state.message.endswith("absent.parquet does not exist; check the path or URL passed as --pairs.")


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.ENOTDIR, errno.EACCES, errno.EROFS, errno.EISDIR, errno.EDQUOT]
)
def test_deterministic_os_errors_are_not_retried(code: int) -> None:
    from tasks.failures import is_deterministic_os_error
    from tasks.stages import is_transient

    exc = OSError(code, "x", "/store/stages/a/b")
    assert is_deterministic_os_error(exc) and not is_transient(exc)
    assert is_transient(OSError(errno.ECONNRESET, "reset")) and is_transient(TimeoutError())
