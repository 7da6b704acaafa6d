"""A small model registry in the store: immutable numbered versions and a `latest` pointer.

Layout (built from `Store.uri` only):

    {store}/registry/versions/{n:06d}.json   one published version (write-once)
    {store}/registry/latest.json             {"version": n, "uri": ..., "updated": ...} (atomic replace)

A version records the bi- and cross-encoder URIs, their metrics, the pair pool they were trained on,
the config, the parent version, the inbox files it ingested and when it was created. Publishing first
writes the new version, then moves the pointer, so a reader of `latest` always finds a complete version.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from tasks.store import ObjectExistsError, Store, StoreError

REGISTRY = "registry"
VERSIONS = "versions"
LATEST = "latest.json"
_PUBLISH_ATTEMPTS = 5


class RegistryError(StoreError):
    """A registry version is missing or unreadable."""


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate may be published, and why.

    Attributes:
        publish: True when the candidate may become the latest version.
        reason: One sentence for the run report.
        candidate: The candidate's dev score (Spearman x100), None without a dev set.
        current: The latest version's dev score, None when there is none.
        tolerance: The allowed drop below `current`, in Spearman x100 points.
    """

    publish: bool
    reason: str
    candidate: float | None
    current: float | None
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate(candidate: float | None, current: float | None, tolerance: float) -> GateDecision:
    """Publish unless the candidate's dev score falls more than `tolerance` below the current one."""
    if tolerance < 0:
        raise ValueError(f"Registry gate expects a tolerance >= 0 (Spearman x100 points), got {tolerance}.")
    if candidate is None:
        return GateDecision(True, "no dev score: published with its metrics", candidate, current, tolerance)
    if current is None:
        return GateDecision(True, "no earlier dev score to compare with", candidate, current, tolerance)
    floor = current - tolerance
    rule = f"{floor:.2f} (current {current:.2f} - tolerance {tolerance:g})"
    if candidate >= floor:
        return GateDecision(True, f"dev {candidate:.2f} >= {rule}", candidate, current, tolerance)
    return GateDecision(False, f"dev {candidate:.2f} < {rule}: kept current", candidate, current, tolerance)


def version_uri(store: Store, version: int) -> str:
    return store.uri(REGISTRY, VERSIONS, f"{version:06d}.json")


def latest_uri(store: Store) -> str:
    return store.uri(REGISTRY, LATEST)


def list_versions(store: Store) -> list[int]:
    """The published version numbers, ascending."""
    try:
        entries = store.fs.ls(store.path(store.uri(REGISTRY, VERSIONS)), detail=False)
    except FileNotFoundError:
        return []
    numbers = []
    for entry in entries:
        stem, suffix = PurePosixPath(str(entry)).stem, PurePosixPath(str(entry)).suffix
        if suffix == ".json" and stem.isdigit() and len(stem) == 6:
            numbers.append(int(stem))
    return sorted(numbers)


def read_version(store: Store, version: int) -> dict[str, Any]:
    """One version's record; a clear error when it does not exist."""
    uri = version_uri(store, version)
    if not store.exists(uri):
        known = list_versions(store)
        raise RegistryError(
            f"Registry expects a published version, got {version} which is not in {store.uri(REGISTRY)} "
            f"(versions: {known or 'none'}); run `trans-encoder models list --store {store.root}`."
        )
    return store.read_json(uri)


def latest_version_number(store: Store) -> int | None:
    """The version the `latest` pointer names, or None before the first publish."""
    uri = latest_uri(store)
    if not store.exists(uri):
        return None
    pointer = store.read_json(uri)
    if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), int):
        raise RegistryError(f"Registry expects {uri} to hold {{'version': int}}, got {pointer!r}.")
    return pointer["version"]


def read_latest(store: Store) -> dict[str, Any] | None:
    """The latest published version's record, or None before the first publish."""
    number = latest_version_number(store)
    return None if number is None else read_version(store, number)


def resolve_version(store: Store, ref: str) -> dict[str, Any]:
    """A version by number ("3", "000003") or "latest"."""
    if ref == "latest":
        record = read_latest(store)
        if record is None:
            raise RegistryError(
                f"Registry expects at least one published version in {store.uri(REGISTRY)}, found none; "
                "run the retrain flow first."
            )
        return record
    if not ref.isdigit():
        raise RegistryError(f"Registry expects a version number or 'latest', got {ref!r}.")
    return read_version(store, int(ref))


def publish_version(store: Store, record: dict[str, Any]) -> dict[str, Any]:
    """Write `record` as the next immutable version, then point `latest` at it.

    Args:
        store: The store holding the registry.
        record: The version's content (models, metrics, pool, config, ...); `version`, `parent` and
            `created` are filled in here.

    Returns:
        The stored record, with its `version` number.
    """
    parent = latest_version_number(store)
    for _ in range(_PUBLISH_ATTEMPTS):
        number = max(list_versions(store), default=0) + 1
        stored = {
            **record,
            "version": number,
            "parent": parent,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        try:
            store.write_once(version_uri(store, number), _json_bytes(stored))
        except ObjectExistsError:
            continue  # another publisher took this number: take the next one
        store.write_json(latest_uri(store), {"version": number, "uri": version_uri(store, number)})
        return stored
    raise RegistryError(
        f"Registry could not claim a version number in {store.uri(REGISTRY)} after {_PUBLISH_ATTEMPTS} "
        "attempts; another process is publishing: retry when it is done."
    )


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()
