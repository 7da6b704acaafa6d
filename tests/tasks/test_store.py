"""The store: URIs, write-once atomic artifacts, verification, local and memory:// roots."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from tasks.store import COMMIT_FILE, Store, StoreError


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    return Store(f"memory://te-{uuid.uuid4().hex[:8]}")


def _folder(tmp_path: Path, name: str, content: bytes) -> Path:
    folder = tmp_path / name
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(content)
    (folder / "sub" / "b.txt").write_text("hello")
    return folder


def test_commit_then_verify_roundtrip(store: Store, tmp_path: Path) -> None:
    uri = store.uri("stages", "x", "k1")
    art = store.commit_dir(_folder(tmp_path, "out", b"123"), uri, {"metrics": {"m": 1}})
    again = store.verify(uri)
    assert again is not None and again.digest == art.digest and again.meta["metrics"] == {"m": 1}
    local = store.local_copy(uri)
    assert (local / "a.bin").read_bytes() == b"123" and (local / "sub" / "b.txt").read_text() == "hello"


def test_artifacts_are_write_once(store: Store, tmp_path: Path) -> None:
    uri = store.uri("stages", "x", "k1")
    first = store.commit_dir(_folder(tmp_path, "one", b"first"), uri, {"n": 1})
    second = store.commit_dir(_folder(tmp_path, "two", b"second"), uri, {"n": 2})
    assert second.digest == first.digest
    assert (store.local_copy(uri) / "a.bin").read_bytes() == b"first"


def test_uncommitted_folder_is_not_an_artifact(store: Store, tmp_path: Path) -> None:
    uri = store.uri("stages", "x", "k1")
    store.write_bytes(uri + "/a.bin", b"partial")
    assert store.verify(uri) is None
    with pytest.raises(StoreError, match="committed artifact"):
        store.local_copy(uri)


def test_corrupted_file_fails_verification(store: Store, tmp_path: Path) -> None:
    uri = store.uri("stages", "x", "k1")
    store.commit_dir(_folder(tmp_path, "out", b"0123456789"), uri, {})
    store.write_bytes(uri + "/a.bin", b"0123456780")  # same size, different content
    assert store.verify(uri, deep=False) is not None
    assert store.verify(uri) is None
    store.write_bytes(uri + "/a.bin", b"012")  # truncated
    assert store.verify(uri, deep=False) is None


def test_missing_file_fails_verification(store: Store, tmp_path: Path) -> None:
    uri = store.uri("stages", "x", "k1")
    store.commit_dir(_folder(tmp_path, "out", b"abc"), uri, {})
    store.delete(uri + "/sub")
    assert store.verify(uri) is None


@pytest.mark.parametrize("bad", ["..", "../etc", "/abs", "a/b", ".hidden", "", "x" * 300])
def test_unsafe_key_segments_are_rejected(bad: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot escape the store root"):
        Store(str(tmp_path)).uri("runs", bad)


def test_uri_outside_root_is_rejected(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s"))
    with pytest.raises(StoreError, match="expects a URI under it"):
        store.path(str(tmp_path / "other" / "x"))


def test_unsupported_scheme_is_rejected() -> None:
    with pytest.raises(StoreError, match="ftp://host/x.*use e.g."):
        Store("ftp://host/x")


def test_local_concurrent_commits_keep_one_copy(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "store"))
    uri = store.uri("stages", "x", "k")
    folders = [_folder(tmp_path, f"w{i}", b"same") for i in range(4)]
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda f=f: results.append(store.commit_dir(f, uri, {}).digest))
        for f in folders
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    parent = Path(store.path(uri)).parent
    assert [p.name for p in parent.iterdir()] == ["k"]  # no temporary leftovers
    assert (parent / "k" / COMMIT_FILE).is_file()


def test_write_bytes_replaces_atomically(store: Store) -> None:
    uri = store.uri("runs", "r", "summary.json")
    store.write_json(uri, {"a": 1})
    store.write_json(uri, {"a": 2})
    assert store.read_json(uri) == {"a": 2}


def test_write_with_streams_a_file_into_place_and_a_failed_writer_keeps_the_old_object(store: Store) -> None:
    uri = store.uri("checkpoints", "s", "k", "state.safetensors")
    store.write_with(uri, lambda path: Path(path).write_bytes(b"first"))
    store.write_with(uri, lambda path: Path(path).write_bytes(b"second"))
    assert store.read_bytes(uri) == b"second"

    def torn(path: str) -> None:
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.write_with(uri, torn)
    assert store.read_bytes(uri) == b"second"
    folder = store.path(uri).rsplit("/", 1)[0]
    assert [p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False)] == ["state.safetensors"]


def test_recommit_over_a_corrupted_artifact_sets_the_old_one_aside(store: Store, tmp_path: Path) -> None:
    uri = store.uri("stages", "x", "k1")
    store.commit_dir(_folder(tmp_path, "one", b"0123456789"), uri, {"n": 1})
    store.write_bytes(uri + "/a.bin", b"9876543210")
    art = store.commit_dir(_folder(tmp_path, "two", b"0123456789"), uri, {"n": 2})
    assert store.verify(uri) is not None and art.meta == {"n": 2}
    parent = store.path(uri).rsplit("/", 1)[0]
    kept = [p for p in store.fs.ls(parent, detail=False) if ".k1.invalid-" in p]
    assert len(kept) == 1, "the corrupted copy is moved aside, not deleted"
