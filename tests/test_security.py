"""Security: nothing unsafe is deserialised, stored artifacts hold only inert files, no secrets in config.

- Our shipped code (flows/, tasks/, trans_encoder_core/, bench/, data/) never calls `pickle.load`,
  `torch.load` without `weights_only=True` and other pickle-based loaders, loads every transformers
  model with `use_safetensors=True`, never passes `trust_remote_code=True` and never defaults it to
  True; every Prefect task opts out of result persistence (Prefect would serialise results with
  cloudpickle). The scan reads the syntax tree and resolves each module's imports and aliases
  (`import pickle as pk`, `from torch import load`), so words in strings and comments do not count;
  names reached dynamically (`getattr`, `importlib`) are not followed. Tests may pickle in memory.
- A model folder whose weights are only pickle-based (`pytorch_model.bin`) is refused with a clear
  error, and nothing is unpickled (checked by running the loaders on such a folder).
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
# Fully qualified names (after resolving each module's imports and aliases) that unpickle.
PICKLE_LOADERS = frozenset(
    f"{module}.{name}"
    for module, names in {
        "pickle": ("load", "loads", "Unpickler"),
        "_pickle": ("load", "loads", "Unpickler"),
        "cPickle": ("load", "loads", "Unpickler"),
        "dill": ("load", "loads", "Unpickler"),
        "cloudpickle": ("load", "loads"),
        "joblib": ("load",),
        "marshal": ("load", "loads"),
        "shelve": ("open",),
        "pandas": ("read_pickle",),
        "torch.serialization": ("load",),
    }.items()
    for name in names
)
# `transformers` classes whose from_pretrained reads no weights (tokenizers, configs, processors).
WEIGHTLESS = re.compile(r"(Tokenizer(Fast)?|Config|Processor|FeatureExtractor)$")


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


def import_aliases(tree: ast.AST) -> dict[str, str]:
    """Each name a module binds by import, mapped to what it stands for: `import pickle as pk` binds
    pk -> pickle, `from torch import load` binds load -> torch.load, `import os.path` binds os -> os."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    aliases[head] = head
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def qualified_name(func: ast.AST, aliases: dict[str, str]) -> str:
    """The dotted name a call refers to, its first part resolved through the module's imports."""
    dotted = _dotted(func)
    if not dotted:
        return ""
    return ".".join([aliases.get(dotted[0], dotted[0]), *dotted[1:]])


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _call_problems(name: str, keywords: dict[str | None, ast.expr]) -> Iterator[str]:
    """What is unsafe about one call to the fully qualified `name`, if anything."""
    if name in PICKLE_LOADERS:
        yield f"{name}()"
    if name == "torch.load" and not _is_true(keywords.get("weights_only")):
        yield "torch.load() without weights_only=True"
    if name == "numpy.load" and _is_true(keywords.get("allow_pickle")):
        yield "numpy.load(allow_pickle=True)"
    if name == "yaml.load" and "Loader" not in keywords:
        yield "yaml.load() without a safe Loader"
    if name in ("yaml.unsafe_load", "yaml.full_load"):
        yield f"{name}()"
    if _is_true(keywords.get("trust_remote_code")):
        yield "trust_remote_code=True"
    parts = name.split(".")
    if (
        parts[0] == "transformers"
        and parts[-1] == "from_pretrained"
        and not WEIGHTLESS.search(parts[-2])
        and not _is_true(keywords.get("use_safetensors"))
    ):
        yield f"{'.'.join(parts[-2:])}() without use_safetensors=True"


def unsafe_calls(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for each unsafe deserialisation or remote-code default in a module's tree."""
    aliases = import_aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = qualified_name(node.func, aliases)
            keywords = {k.arg: k.value for k in node.keywords}
            for what in _call_problems(name, keywords):
                yield node.lineno, what
            if name.split(".")[-1] in ("task", "pipeline_task"):
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
import pickle as pk
import pandas as pd
from pickle import loads
from torch import load
from torch import load as tload
from prefect import task
from transformers import AutoModel, AutoTokenizer
from transformers import AutoModelForSequenceClassification as Cross
pickle.load(open("x", "rb"))
pk.load(open("x", "rb"))
loads(data)
pd.read_pickle("x.pkl")
load("w.pt")
tload("w.pt", weights_only=True)
torch.load("w.pt")
torch.load("w.pt", weights_only=True)
np.load("a.npy", allow_pickle=True)
yaml.load(text)
AutoModel.from_pretrained("x", trust_remote_code=True)
AutoModel.from_pretrained("x", use_safetensors=True)
Cross.from_pretrained("x")
AutoTokenizer.from_pretrained("x")
def load_it(ref, trust_remote_code=True): ...
class Cfg:
    trust_remote_code: bool = True
@task(persist_result=True)
def stage(): ...
@task
def other(): ...
"""
    tree = ast.parse(sample)
    found = [what for _, what in unsafe_calls(tree)]
    assert found.count("pickle.load()") == 2, "pickle.load and its alias pk.load"
    assert found.count("pickle.loads()") == 1, "from pickle import loads"
    assert "pandas.read_pickle()" in found
    assert found.count("torch.load() without weights_only=True") == 2, "torch.load and from torch import load"
    assert {"numpy.load(allow_pickle=True)", "yaml.load() without a safe Loader"} <= set(found)
    assert {"trust_remote_code=True", "load_it(trust_remote_code=True) default"} <= set(found)
    assert found.count("AutoModel.from_pretrained() without use_safetensors=True") == 1
    assert (
        found.count("AutoModelForSequenceClassification.from_pretrained() without use_safetensors=True") == 1
    )
    assert not [what for what in found if "Tokenizer" in what]
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
    from tasks.distill import bi_scores, cross_scores, train_bi, train_cross
    from tasks.evaluate import evaluate
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
    evaluate.fn(
        store_root,
        {"bi": bi_model},
        "bi",
        None,
        ["stsb"],
        {"bi": bi_cfg},
        {"bi": cross_cfg},
        {"bi": "cpu"},
        1,
    )

    stages = {p.parent.parent.name for p in (root / "stages").glob(f"*/*/{COMMIT_FILE}")}
    assert stages >= {"ingest_pairs", "bi_scores", "train_cross", "cross_scores", "train_bi", "evaluate"}
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    assert any(f.endswith("model.safetensors") for f in files)
    assert unsafe_artifact_files(files) == []


@pytest.mark.usefixtures("torch_single_thread")
def test_a_folder_with_only_pickled_weights_is_refused_without_unpickling(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    import torch
    from transformers import AutoModel

    from trans_encoder_core.encoders import BiEncoder, CrossEncoder
    from trans_encoder_core.errors import ModelLoadError

    folder = tmp_path / "bin-only"
    folder.mkdir()
    torch.save(AutoModel.from_pretrained(tiny_bert).state_dict(), folder / "pytorch_model.bin")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tiny_bert / name).read_bytes())
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    unpickled: list[str] = []

    def record(*args: object, **kwargs: object) -> None:
        unpickled.append("unpickled")
        raise AssertionError("pickle-based weights were loaded")

    monkeypatch.setattr(torch, "load", record)
    monkeypatch.setattr(pickle, "load", record)
    monkeypatch.setattr(pickle, "Unpickler", record)
    for loader in (BiEncoder.from_pretrained, CrossEncoder.from_pretrained):
        with pytest.raises(ModelLoadError, match=r"expects safetensors weights .* got pytorch_model\.bin"):
            loader(folder)
    assert unpickled == []
