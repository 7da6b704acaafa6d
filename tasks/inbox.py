"""The inbox of new unlabeled pair files, the ledger of those already ingested, and the event that
announces a new file.

Layout (built from `Store.uri` only):

    {store}/inbox/{name}          pair files as the user gave them (validated, write-once)
    {store}/ledger/inbox.json     {"files": {name: {sha256, version, run, recorded}}}

A file is pending while its name is not in the ledger. The retrain flow records a file only after the
model trained on it was published, so a failed or rejected run leaves it pending for the next run.
This module imports neither torch nor the stage machinery, so `trans-encoder add-pairs` starts fast.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
from pathlib import PurePosixPath
from typing import Any

import fsspec

from tasks.store import Store, StoreError, digest_json, safe_segment
from trans_encoder_core.errors import InputDataError
from trans_encoder_core.pair_files import PairReadResult, read_pairs

INBOX = "inbox"
LEDGER = ("ledger", "inbox.json")
PAIRS_ADDED_EVENT = "trans-encoder.pairs.added"
RESOURCE_PREFIX = "trans-encoder.inbox."


def read_file_bytes(source: str) -> bytes:
    """The bytes of a local path or fsspec URL, with a clear error when it is missing."""
    try:
        with fsspec.open(source, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise InputDataError(f"Pair file {source} does not exist; check the path.", source=source) from exc
    except IsADirectoryError as exc:
        raise InputDataError(f"Pair file {source} is a folder; pass a file.", source=source) from exc


def parse_pair_file(data: bytes, name: str) -> PairReadResult:
    """Validate a pair file's bytes with the project's reader (format inferred from `name`)."""
    return read_pairs(io.BytesIO(data), name=name)


def add_pair_file(store: Store, source: str, *, name: str | None = None) -> dict[str, Any]:
    """Validate a pair file and copy it into the inbox under `name` (default: its file name).

    Args:
        store: The store whose inbox receives the file.
        source: Path or fsspec URL of the pair file (Parquet, CSV, TSV or JSONL).
        name: Name in the inbox; letters, digits, '.', '_', '=' or '-', with the format's extension.

    Returns:
        `{"name", "uri", "sha256", "pairs", "rows"}` of the stored file.

    Raises:
        InputDataError: The file is missing or is not a valid pair file.
        StoreError: The name is unsafe, or a file of that name is already in the inbox.
    """
    target = safe_segment(name or PurePosixPath(source.rstrip("/")).name, "an inbox file name")
    data = read_file_bytes(source)
    result = parse_pair_file(data, target)
    uri = store.uri(INBOX, target)
    if store.exists(uri):
        raise StoreError(
            f"Inbox expects a new file name, got {target!r} which is already in {store.uri(INBOX)}; "
            "inbox files are never overwritten: pass another name (e.g. with a date)."
        )
    store.write_once(uri, data)
    return {
        "name": target,
        "uri": uri,
        "sha256": hashlib.sha256(data).hexdigest(),
        "pairs": result.n_pairs,
        "rows": result.n_rows,
    }


def list_inbox(store: Store) -> list[str]:
    """Names of the inbox files, sorted; temporary and unsafe names are skipped."""
    try:
        entries = store.fs.ls(store.path(store.uri(INBOX)), detail=False)
    except FileNotFoundError:
        return []
    names = sorted(PurePosixPath(str(e)).name for e in entries)
    return [n for n in names if _is_safe(n)]


def _is_safe(name: str) -> bool:
    try:
        safe_segment(name, "an inbox file name")
    except StoreError:
        return False
    return True


def ledger_uri(store: Store) -> str:
    return store.uri(*LEDGER)


def read_ledger(store: Store) -> dict[str, dict[str, Any]]:
    """The ledger's records by file name (empty when nothing was ingested yet)."""
    uri = ledger_uri(store)
    if not store.exists(uri):
        return {}
    data = store.read_json(uri)
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise StoreError(
            f"Inbox ledger expects a JSON object with a 'files' object at {uri}, got {type(data).__name__}; "
            "restore it from the registry versions (their 'inbox' lists) or move it aside."
        )
    return data["files"]


def pending_files(store: Store, also_done: list[str] | tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Inbox files not in the ledger (nor in `also_done`), oldest name first.

    Args:
        store: The store.
        also_done: Names known to be ingested elsewhere (the latest registry version's inbox list),
            which covers a crash between publishing a version and recording the ledger.
    """
    done = set(read_ledger(store)) | set(also_done)
    return [{"name": n, "uri": store.uri(INBOX, n)} for n in list_inbox(store) if n not in done]


def record_ingested(
    store: Store, files: list[dict[str, Any]], *, version: int, run: str | None = None
) -> dict[str, dict[str, Any]]:
    """Add `files` (each with `name` and `sha256`) to the ledger as ingested by registry `version`."""
    ledger = read_ledger(store)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for entry in files:
        ledger[entry["name"]] = {"sha256": entry["sha256"], "version": version, "run": run, "recorded": now}
    store.write_json(ledger_uri(store), {"files": ledger})
    return ledger


def inbox_resource(store: Store) -> dict[str, str]:
    """The Prefect event resource of a store's inbox (its id is stable per store root)."""
    return {
        "prefect.resource.id": RESOURCE_PREFIX + digest_json(store.root)[:16],
        "prefect.resource.name": f"trans-encoder inbox of {store.root}",
    }


def pairs_added_payload(store: Store, entry: dict[str, Any]) -> dict[str, Any]:
    """The payload of a `trans-encoder.pairs.added` event: the store and the new file."""
    return {"store": store.root, "file": entry["uri"], "name": entry["name"], "pairs": entry["pairs"]}


def emit_pairs_added(store: Store, entry: dict[str, Any]) -> str | None:
    """Send `trans-encoder.pairs.added` to the Prefect server named by PREFECT_API_URL.

    Returns:
        The API URL the event went to, or None when no server is configured (nothing is sent: an
        ephemeral server would see no deployment to trigger).

    Raises:
        Exception: Whatever the events client raises when the server cannot be reached.
    """
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not api_url:
        return None
    asyncio.run(_emit(PAIRS_ADDED_EVENT, inbox_resource(store), pairs_added_payload(store, entry)))
    return str(api_url)


async def _emit(event: str, resource: dict[str, str], payload: dict[str, Any]) -> None:
    from prefect.events.clients import get_events_client
    from prefect.events.schemas.events import Event

    async with get_events_client(reconnection_attempts=2) as client:
        await client.emit(Event(event=event, resource=resource, payload=payload))
