"""Exporting a registry version into plain folders (checksums verified, model cards) and the hub upload.

The hub is not reachable here: the upload is tested through a stand-in for `huggingface_hub.HfApi`
that records the calls and the folder's files at upload time.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tasks.export import export_version, push_to_hub, version_metrics
from tasks.registry import RegistryError, publish_version
from tasks.store import COMMIT_FILE, Store, StoreIntegrityError, sha256_file
from tests.tiny import CORPUS
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.scoring import cross_scores, encode

pytestmark = pytest.mark.usefixtures("torch_single_thread")
METRICS = {
    "bi": {"cycle": 1, "dev": 70.5, "test": {"stsb": 65.25, "sts12": 60.0}, "average": 62.62},
    "cross": {"cycle": 1, "dev": 68.0, "test": {"stsb": 64.0, "sts12": 59.5}, "average": 61.75},
}


def _commit(store: Store, stage: str, key: str, save: Any) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        save(Path(tmp) / "model")
        return store.commit_dir(Path(tmp) / "model", store.uri("stages", stage, key), {"stage": stage}).uri


@pytest.fixture
def published(tiny_bert: Path, tmp_path: Path) -> tuple[Store, dict[str, Any]]:
    """A store with one published version whose models are committed tiny bi- and cross-encoders."""
    store = Store(str(tmp_path / "store"))
    bi = BiEncoder.from_pretrained(tiny_bert, pooling="mean", max_seq_length=16)
    cross = CrossEncoder.from_pretrained(tiny_bert, max_length=24)
    models = {
        "bi": _commit(store, "train_bi", "b1" * 12, bi.save),
        "cross": _commit(store, "train_cross", "c2" * 12, cross.save),
    }
    config = {
        "run_name": "r",
        "cycles": 1,
        "bi": {"model": "packaged"},
        "cross": {"model": "bert-base-uncased"},
    }
    record = {
        "models": models,
        "metrics": METRICS,
        "pool": {"uri": store.uri("stages", "ingest_pairs", "p" * 24), "digest": "d" * 64, "pairs": 40},
        "config": config,
        "inbox": ["a.csv.gz"],
        "run": {"flow_run_id": "run-1"},
    }
    return store, publish_version(store, record)


def _front_matter(text: str) -> dict[str, Any]:
    return yaml.safe_load(text[4:].split("\n---\n", 1)[0])


def test_export_writes_plain_folders_that_sentence_transformers_loads(
    published: tuple[Store, dict[str, Any]], tiny_bert: Path, tmp_path: Path
) -> None:
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from sentence_transformers import SentenceTransformer

    store, record = published
    result = export_version(store, "latest", tmp_path / "out")
    assert result["version"] == record["version"] == 1
    bi_dir, cross_dir = Path(result["folders"]["bi"]), Path(result["folders"]["cross"])
    assert (bi_dir, cross_dir) == (tmp_path / "out" / "bi", tmp_path / "out" / "cross")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bi", "cross"]  # no staging left
    for kind, folder in (("bi", bi_dir), ("cross", cross_dir)):
        assert not (folder / COMMIT_FILE).exists() and result["models"][kind]["verified"] is True
        commit = store.read_commit(record["models"][kind])
        assert commit is not None
        for rel, rec in commit["files"].items():  # every stored file, byte for byte
            assert sha256_file(folder / rel) == rec["sha256"], rel

    bi = BiEncoder.from_pretrained(bi_dir)
    st = SentenceTransformer(str(bi_dir), device="cpu")
    assert st.max_seq_length == 16
    np.testing.assert_allclose(st.encode(CORPUS, convert_to_numpy=True), encode(bi, CORPUS), atol=1e-5)
    pairs = list(zip(CORPUS[:6], CORPUS[6:], strict=True))
    theirs = STCrossEncoder(str(cross_dir), device="cpu").predict(pairs, convert_to_numpy=True)
    ours = cross_scores(CrossEncoder.from_pretrained(cross_dir, max_length=24), CORPUS[:6], CORPUS[6:])
    np.testing.assert_allclose(theirs, ours, atol=1e-5)


def test_exported_cards_carry_final_scores_lineage_and_load_code(
    published: tuple[Store, dict[str, Any]], tmp_path: Path
) -> None:
    store, record = published
    result = export_version(store, "1", tmp_path / "out", model_ids={"bi": "me/te-bi"})
    bi_card = (Path(result["folders"]["bi"]) / "README.md").read_text()
    cross_card = (Path(result["folders"]["cross"]) / "README.md").read_text()
    assert _front_matter(bi_card)["pipeline_tag"] == "sentence-similarity"
    assert _front_matter(bi_card)["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert _front_matter(cross_card)["base_model"] == "bert-base-uncased"
    assert (
        "| STS-B dev | spearman x100 | 70.50 |" in bi_card
        and "| STS-B test | spearman x100 | 65.25 |" in bi_card
    )
    assert "| STS-B dev | spearman x100 | 68.00 |" in cross_card
    assert "| pooling | mean |" in bi_card and "| max tokens per pair | 24 |" in cross_card
    assert "| registry version | `1` |" in bi_card and "`stages/train_bi/" + "b1" * 12 + "`" in bi_card
    assert "40 unlabeled sentence pairs" in bi_card and "`a.csv.gz`" in bi_card
    assert 'SentenceTransformer("me/te-bi")' in bi_card
    assert f'CrossEncoder("{tmp_path / "out" / "cross"}")' in cross_card  # default: the folder's path
    config = json.loads(bi_card.split("```json\n", 1)[1].split("\n```", 1)[0])
    assert config == record["config"]


def test_version_metrics_shape() -> None:
    metrics = version_metrics(METRICS["bi"])
    assert metrics == {
        "stsb_dev": {"spearman x100": 70.5},
        "stsb": {"spearman x100": 65.25},
        "sts12": {"spearman x100": 60.0},
        "average over 2 test sets": {"spearman x100": 62.62},
    }
    assert version_metrics({"cycle": 0, "dev": None, "test": {}, "average": None}) == {
        "stsb_dev": {"spearman x100": None}
    }


def test_a_damaged_artifact_is_not_exported(published: tuple[Store, dict[str, Any]], tmp_path: Path) -> None:
    store, record = published
    weights = Path(store.path(record["models"]["cross"])) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    weights.write_bytes(bytes(data))
    with pytest.raises(StoreIntegrityError, match=r"model\.safetensors of .*train_cross.* recorded sha256"):
        export_version(store, "latest", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-exported is left


def test_bad_references_and_targets_are_explained(
    published: tuple[Store, dict[str, Any]], tiny_bert: Path, tmp_path: Path
) -> None:
    store, record = published
    with pytest.raises(RegistryError, match=r"got 9 which is not in"):
        export_version(store, "9", tmp_path / "a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(RegistryError, match=r"new or empty folder, got .*full"):
        export_version(store, "1", tmp_path / "full")
    with pytest.raises(RegistryError, match=r"kinds among \('bi', 'cross'\), got \['tri'\]"):
        export_version(store, "1", tmp_path / "b", kinds=("tri",))
    # a version whose bi-encoder is the kept start model: a local folder is copied (no checksum), a hub
    # name is refused
    publish_version(store, {**record, "models": {**record["models"], "bi": str(tiny_bert)}})
    result = export_version(store, "latest", tmp_path / "c", kinds=("bi",))
    assert result["models"]["bi"]["verified"] is False and (tmp_path / "c" / "bi" / "README.md").is_file()
    publish_version(store, {**record, "models": {**record["models"], "bi": "org/some-model"}})
    with pytest.raises(RegistryError, match=r"got 'org/some-model'; a hub model is already published"):
        export_version(store, "latest", tmp_path / "d", kinds=("bi",))


class FakeHub:
    """Records what `huggingface_hub.HfApi` would be asked to do, and the files it would upload."""

    def __init__(self, token: str | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.uploaded: dict[str, list[str]] = {}

    def create_repo(self, **kwargs: Any) -> str:
        self.calls.append(("create_repo", kwargs))
        return f"https://hub.example/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs: Any) -> str:
        self.calls.append(("upload_folder", kwargs))
        folder = Path(kwargs["folder_path"])
        self.uploaded[kwargs["repo_id"]] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        return f"https://hub.example/{kwargs['repo_id']}/commit/1"


def test_push_to_hub_uploads_the_exported_folder(
    published: tuple[Store, dict[str, Any]], tmp_path: Path
) -> None:
    store, _ = published
    folder = export_version(store, "1", tmp_path / "out", kinds=("bi",))["folders"]["bi"]
    hub = FakeHub()
    url = push_to_hub(folder, "me/te-bi", private=True, api=hub)
    assert url == "https://hub.example/me/te-bi/commit/1"
    assert hub.calls[0] == (
        "create_repo",
        {"repo_id": "me/te-bi", "repo_type": "model", "private": True, "exist_ok": True},
    )
    upload = hub.calls[1][1]
    assert (upload["repo_id"], upload["folder_path"], upload["repo_type"]) == ("me/te-bi", folder, "model")
    assert COMMIT_FILE in upload["ignore_patterns"]
    files = hub.uploaded["me/te-bi"]
    assert {"README.md", "config.json", "model.safetensors", "modules.json", "1_Pooling/config.json"} <= set(
        files
    )
    assert COMMIT_FILE not in files
    with pytest.raises(RegistryError, match=r"exported model folder with config\.json and README\.md"):
        push_to_hub(tmp_path, "me/x", api=hub)


def test_cli_exports_and_pushes_both_models(
    published: tuple[Store, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import huggingface_hub

    from flows.cli import main

    store, _ = published
    hubs: list[FakeHub] = []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: hubs.append(FakeHub(token)) or hubs[-1])
    out = tmp_path / "out"
    assert (
        main(["models", "export", "latest", str(out), "--store", store.root, "--push-to-hub", "me/te"]) == 0
    )
    printed = capsys.readouterr().out
    assert "bi-encoder -> " in printed and "sha256 verified" in printed and "me/te-cross" in printed
    assert sorted(repo for hub in hubs for repo in hub.uploaded) == ["me/te-bi", "me/te-cross"]
    assert 'CrossEncoder("me/te-cross")' in (out / "cross" / "README.md").read_text()
    assert main(["models", "export", "latest", str(out), "--store", store.root]) == 2  # not empty any more
    assert "new or empty folder" in capsys.readouterr().err
