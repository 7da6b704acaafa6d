"""The inbox: validated write-once pair files, the ingestion ledger, and the pairs-added event."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tasks import inbox
from tasks.inbox import (
    PAIRS_ADDED_EVENT,
    add_pair_file,
    inbox_resource,
    list_inbox,
    pending_files,
    read_ledger,
    record_ingested,
)
from tasks.store import ObjectExistsError, Store, StoreError
from trans_encoder_core.errors import InputDataError

CSV = (
    "sentence1,sentence2\n"
    "a cat sits,a cat is sitting\n"
    "two dogs run,dogs are running\n"
    "a cat sits,a cat is sitting\n"
)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    return Store(f"memory://inbox-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def pair_file(tmp_path: Path) -> Path:
    path = tmp_path / "new-pairs.csv"
    path.write_text(CSV)
    return path


def test_add_copies_a_validated_file_byte_for_byte(store: Store, pair_file: Path) -> None:
    entry = add_pair_file(store, str(pair_file))
    assert entry["name"] == "new-pairs.csv" and entry["uri"] == store.uri("inbox", "new-pairs.csv")
    assert (entry["rows"], entry["pairs"]) == (3, 2)  # the duplicate row is counted, not added twice
    assert store.read_bytes(entry["uri"]) == pair_file.read_bytes()
    assert list_inbox(store) == ["new-pairs.csv"]


def test_add_rejects_an_invalid_file_and_stores_nothing(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\na,b\n")
    with pytest.raises(InputDataError, match="expects columns 'sentence1' and 'sentence2'"):
        add_pair_file(store, str(bad))
    with pytest.raises(InputDataError, match="does not exist"):
        add_pair_file(store, str(tmp_path / "missing.csv"))
    assert list_inbox(store) == []


def test_add_rejects_unsafe_names(store: Store, pair_file: Path) -> None:
    for name in ("../escape.csv", ".hidden.csv", "a/b.csv"):
        with pytest.raises(StoreError, match="cannot escape the store root"):
            add_pair_file(store, str(pair_file), name=name)
    assert list_inbox(store) == []


def test_add_never_overwrites_an_inbox_file(store: Store, pair_file: Path, tmp_path: Path) -> None:
    add_pair_file(store, str(pair_file))
    other = tmp_path / "other" / "new-pairs.csv"
    other.parent.mkdir()
    other.write_text("sentence1,sentence2\nsomething,else entirely\n")
    with pytest.raises(StoreError, match="already in"):
        add_pair_file(store, str(other))
    assert store.read_bytes(store.uri("inbox", "new-pairs.csv")) == pair_file.read_bytes()
    add_pair_file(store, str(other), name="new-pairs-2.csv")
    assert list_inbox(store) == ["new-pairs-2.csv", "new-pairs.csv"]


def test_write_once_refuses_an_existing_object(store: Store) -> None:
    uri = store.uri("inbox", "x.csv")
    store.write_once(uri, b"first")
    with pytest.raises(ObjectExistsError, match="already exists"):
        store.write_once(uri, b"second")
    assert store.read_bytes(uri) == b"first"


def test_pending_files_skip_the_ledger_and_known_names(store: Store, pair_file: Path) -> None:
    a = add_pair_file(store, str(pair_file), name="a.csv")
    add_pair_file(store, str(pair_file), name="b.csv")
    add_pair_file(store, str(pair_file), name="c.csv")
    assert [f["name"] for f in pending_files(store)] == ["a.csv", "b.csv", "c.csv"]
    record_ingested(store, [a], version=1, run="run-1")
    assert read_ledger(store)["a.csv"]["version"] == 1
    assert read_ledger(store)["a.csv"]["sha256"] == a["sha256"]
    assert [f["name"] for f in pending_files(store)] == ["b.csv", "c.csv"]
    assert [f["name"] for f in pending_files(store, ["b.csv"])] == ["c.csv"]


def test_list_inbox_ignores_temporary_files(tmp_path: Path, pair_file: Path) -> None:
    store = Store(str(tmp_path / "store"))
    add_pair_file(store, str(pair_file))
    (tmp_path / "store" / "inbox" / ".new.csv.tmp-1234").write_text("half written")
    assert list_inbox(store) == ["new-pairs.csv"]


def test_a_corrupt_ledger_is_reported(store: Store) -> None:
    store.write_json(inbox.ledger_uri(store), ["not", "a", "ledger"])
    with pytest.raises(StoreError, match="'files' object"):
        read_ledger(store)


def test_event_is_not_sent_without_a_server(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setattr(inbox, "_emit", _refuse)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert inbox.emit_pairs_added(store, {"uri": "u", "name": "n", "pairs": 1}) is None


async def _refuse(*args: Any) -> None:
    raise AssertionError("no event may be sent without PREFECT_API_URL")


def test_event_names_the_store_and_the_file(
    store: Store, pair_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    sent: list[Any] = []

    async def capture(event: str, resource: dict[str, str], payload: dict[str, Any]) -> None:
        sent.append((event, resource, payload))

    monkeypatch.setattr(inbox, "_emit", capture)
    entry = add_pair_file(store, str(pair_file))
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert inbox.emit_pairs_added(store, entry) == "http://127.0.0.1:9/api"
    ((event, resource, payload),) = sent
    assert event == PAIRS_ADDED_EVENT and resource == inbox_resource(store)
    assert resource["prefect.resource.id"].startswith("trans-encoder.inbox.")
    assert payload == {"store": store.root, "file": entry["uri"], "name": "new-pairs.csv", "pairs": 2}
