"""Security: nothing unsafe is deserialised, stored artifacts hold only inert files, no secrets in config.

- Our shipped code (flows/, tasks/, trans_encoder_core/, bench/, data/) never calls `pickle.load`,
  `torch.load` without `weights_only=True` and other pickle-based loaders, never passes
  `trust_remote_code=True` and never defaults it to True; every Prefect task opts out of result
  persistence (Prefect would serialise results with cloudpickle). The scan reads the syntax tree, so
  words in strings and comments do not count. Tests may pickle in memory (error round trips).
- A stage artifact folder holds only safetensors, JSON, Parquet and tokenizer vocabulary files.
- `prefect.yaml` holds no credential values (only names of variables and block references).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("flows", "tasks", "trans_encoder_core", "bench", "data")
SAFE_SUFFIXES = (".safetensors", ".json", ".parquet")
# Tokenizer vocabularies: plain text (WordPiece, BPE merges) or SentencePiece protobuf; never code.
TOKENIZER_FILES = frozenset(
    {"vocab.txt", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model"}
)
PICKLE_LOADERS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("cPickle", "load"),
    ("cPickle", "loads"),
    ("dill", "load"),
    ("dill", "loads"),
    ("cloudpickle", "load"),
    ("cloudpickle", "loads"),
    ("joblib", "load"),
    ("marshal", "loads"),
    ("shelve", "open"),
    ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
}


def unsafe_artifact_files(paths: Iterable[str]) -> list[str]:
    """The paths (object keys or relative paths) whose file type is not allowed in an artifact."""
    return [
        path
        for path in paths
        if not (path.endswith(SAFE_SUFFIXES) or path.rsplit("/", 1)[-1] in TOKENIZER_FILES)
    ]


def shipped_sources() -> Iterator[Path]:
    for folder in SHIPPED:
        yield from sorted((REPO_ROOT / folder).rglob("*.py"))


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for each unsafe deserialisation or remote-code default in a module's tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name[-2:] in PICKLE_LOADERS:
                yield node.lineno, f"{'.'.join(name)}()"
            if name[-2:] == ("torch", "load") and not _is_true(keywords.get("weights_only")):
                yield node.lineno, "torch.load() without weights_only=True"
            if (
                name[-1:] == ("load",)
                and name[-2:-1] in (("np",), ("numpy",))
                and _is_true(keywords.get("allow_pickle"))
            ):
                yield node.lineno, "numpy.load(allow_pickle=True)"
            if name[-2:] == ("yaml", "load") and "Loader" not in keywords:
                yield node.lineno, "yaml.load() without a safe Loader"
            if name[-2:] == ("yaml", "unsafe_load"):
                yield node.lineno, "yaml.unsafe_load()"
            if _is_true(keywords.get("trust_remote_code")):
                yield node.lineno, "trust_remote_code=True"
            if name[-1:] in (("task",), ("pipeline_task",)) or name[-2:] == ("prefect", "task"):
                if "persist_result" in keywords and not (
                    isinstance(keywords["persist_result"], ast.Constant)
                    and keywords["persist_result"].value is False
                ):
                    yield node.lineno, "a Prefect task that persists its result"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            positional = args.posonlyargs + args.args
            defaults = dict(
                zip([a.arg for a in positional[len(positional) - len(args.defaults) :]], args.defaults)
            )
            defaults |= {a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d}
            if _is_true(defaults.get("trust_remote_code")):
                yield node.lineno, f"{node.name}(trust_remote_code=True) default"
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id == "trust_remote_code" and _is_true(node.value):
                yield node.lineno, "trust_remote_code: bool = True field"


def _task_decorators_without_persist_opt_out(tree: ast.AST) -> Iterator[int]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if _dotted(target)[-1:] != ("task",):
                    continue
                keywords = {k.arg: k.value for k in dec.keywords} if isinstance(dec, ast.Call) else {}
                value = keywords.get("persist_result")
                if not (isinstance(value, ast.Constant) and value.value is False):
                    yield node.lineno


def test_the_scanner_finds_what_it_looks_for() -> None:
    sample = """
import pickle, torch, numpy as np, yaml
from prefect import task
pickle.load(open("x", "rb"))
torch.load("w.pt")
torch.load("w.pt", weights_only=True)
np.load("a.npy", allow_pickle=True)
yaml.load(text)
AutoModel.from_pretrained("x", trust_remote_code=True)
def load(ref, trust_remote_code=True): ...
class Cfg:
    trust_remote_code: bool = True
@task(persist_result=True)
def stage(): ...
@task
def other(): ...
"""
    tree = ast.parse(sample)
    found = [what for _, what in unsafe_calls(tree)]
    assert found.count("torch.load() without weights_only=True") == 1
    assert {"pickle.load()", "numpy.load(allow_pickle=True)", "yaml.load() without a safe Loader"} <= set(
        found
    )
    assert {"trust_remote_code=True", "load(trust_remote_code=True) default"} <= set(found)
    assert "trust_remote_code: bool = True field" in found
    assert "a Prefect task that persists its result" in found
    assert len(list(_task_decorators_without_persist_opt_out(tree))) == 2


def test_shipped_code_never_deserialises_pickle_or_trusts_remote_code() -> None:
    sources = list(shipped_sources())
    assert len(sources) > 20, "the scan found too few files to be meaningful"
    problems = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {what}"
        for path in sources
        for line, what in unsafe_calls(ast.parse(path.read_text(), filename=str(path)))
    ]
    assert problems == []


def test_every_prefect_task_opts_out_of_result_persistence() -> None:
    problems = [
        f"{path.relative_to(REPO_ROOT)}:{line}"
        for path in shipped_sources()
        for line in _task_decorators_without_persist_opt_out(ast.parse(path.read_text()))
    ]
    assert problems == [], "tasks must pass persist_result=False (no pickled results anywhere)"


def test_prefect_yaml_holds_no_credentials() -> None:
    yaml = pytest.importorskip("yaml")
    path = REPO_ROOT / "prefect.yaml"
    if not path.is_file():
        pytest.skip("no prefect.yaml")
    text = path.read_text()
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), "an AWS access key id in prefect.yaml"
    secret_key = re.compile(
        r"(^|[_.-])(secret|password|passwd|token|credentials?|api[_-]?key|access[_-]?key)([_.-]|$)", re.I
    )

    def walk(node: object, where: str) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if secret_key.search(str(key)) and isinstance(value, str | int) and str(value).strip():
                    if not re.fullmatch(r"\{\{.*\}\}", str(value).strip()):
                        yield f"{where}.{key}"
                yield from walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, f"{where}[{i}]")

    assert list(walk(yaml.safe_load(text), "prefect.yaml")) == []


@pytest.mark.usefixtures("torch_single_thread")
def test_stage_artifacts_hold_only_safe_file_types(tmp_path: Path, tiny_bert: Path) -> None:
    """Run every stage kind once (plain functions, no Prefect) and list the committed files."""
    from tasks.artifacts import model_input
    from tasks.distill import bi_scores, cross_scores, evaluate, train_bi, train_cross
    from tasks.ingest import ingest_pairs
    from tasks.store import COMMIT_FILE, Store
    from trans_encoder_core.config import (
        BiEncoderConfig,
        CrossEncoderConfig,
        bi_fit_defaults,
        cross_fit_defaults,
    )

    root = tmp_path / "store"
    store_root = str(root)
    source = {
        "kind": "file",
        "uri": str(REPO_ROOT / "data" / "examples" / "pairs.csv"),
        "format": "auto",
        "sentence1_column": "sentence1",
        "sentence2_column": "sentence2",
        "on_invalid": "error",
        "max_pairs": 16,
        "seed": 1,
    }
    bi_cfg = BiEncoderConfig(model=str(tiny_bert), fit=bi_fit_defaults(epochs=1, batch_size=8))
    cross_cfg = CrossEncoderConfig(max_length=32, fit=cross_fit_defaults(batch_size=8))
    pairs = ingest_pairs.fn(store_root, source)
    start = model_input(Store(store_root), str(tiny_bert))
    bi_labels = bi_scores.fn(store_root, start, pairs, bi_cfg, "cpu", 1)
    cross = train_cross.fn(store_root, bi_labels, start, cross_cfg, None, "cpu", 1, 1)
    cross_model = {"ref": cross["uri"], "digest": cross["digest"]}
    cross_labels = cross_scores.fn(store_root, cross_model, pairs, cross_cfg, "cpu", 1)
    bi = train_bi.fn(store_root, cross_labels, cross_model, bi_cfg, None, "cpu", 1, 1)
    bi_model = {"ref": bi["uri"], "digest": bi["digest"]}
    evaluate.fn(store_root, bi_model, "bi", None, ["stsb"], bi_cfg, cross_cfg, "cpu", 1)

    stages = {p.parent.parent.name for p in (root / "stages").glob(f"*/*/{COMMIT_FILE}")}
    assert stages >= {"ingest_pairs", "bi_scores", "train_cross", "cross_scores", "train_bi", "evaluate"}
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    assert any(f.endswith("model.safetensors") for f in files)
    assert unsafe_artifact_files(files) == []
