"""The model registry: the dev gate, immutable numbered versions, and the `latest` pointer."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tasks.registry import (
    RegistryError,
    gate,
    latest_version_number,
    list_versions,
    publish_version,
    read_latest,
    read_version,
    resolve_version,
    version_uri,
)
from tasks.store import ObjectExistsError, Store


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    return Store(f"memory://registry-{uuid.uuid4().hex[:8]}")


def _record(dev: float | None) -> dict[str, Any]:
    return {"models": {"bi": "b", "cross": "c"}, "metrics": {"bi": {"dev": dev}}, "pool": {"pairs": 3}}


@pytest.mark.parametrize(
    ("candidate", "current", "tolerance", "publish"),
    [
        (None, 80.0, 1.0, True),  # no dev set: published with its metrics
        (70.0, None, 1.0, True),  # first version
        (79.5, 80.0, 1.0, True),  # within tolerance
        (79.0, 80.0, 1.0, True),  # exactly at the floor
        (78.9, 80.0, 1.0, False),
        (80.0, 80.0, 0.0, True),
        (81.0, 80.0, 0.0, True),
    ],
)
def test_gate(candidate: float | None, current: float | None, tolerance: float, publish: bool) -> None:
    decision = gate(candidate, current, tolerance)
    assert decision.publish is publish and decision.reason
    assert decision.as_dict()["candidate"] == candidate


def test_gate_rejects_a_negative_tolerance() -> None:
    with pytest.raises(ValueError, match="tolerance >= 0"):
        gate(1.0, 2.0, -0.5)


def test_publish_numbers_versions_and_moves_latest(store: Store) -> None:
    assert read_latest(store) is None and list_versions(store) == []
    first = publish_version(store, _record(70.0))
    assert (first["version"], first["parent"]) == (1, None) and first["created"]
    second = publish_version(store, _record(72.0))
    assert (second["version"], second["parent"]) == (2, 1)
    assert list_versions(store) == [1, 2] and latest_version_number(store) == 2
    assert read_latest(store) == second == resolve_version(store, "latest")
    assert read_version(store, 1) == first == resolve_version(store, "000001")


def test_versions_are_immutable(store: Store) -> None:
    publish_version(store, _record(70.0))
    with pytest.raises(ObjectExistsError):
        store.write_once(version_uri(store, 1), b"{}")
    assert read_version(store, 1)["metrics"]["bi"]["dev"] == 70.0


def test_an_orphan_version_is_skipped_not_overwritten(store: Store) -> None:
    """A publisher that died after writing its version but before moving `latest` leaves an orphan."""
    publish_version(store, _record(70.0))
    store.write_once(version_uri(store, 2), b'{"version": 2, "orphan": true}\n')
    third = publish_version(store, _record(71.0))
    assert (third["version"], third["parent"]) == (3, 1)
    assert read_version(store, 2) == {"version": 2, "orphan": True}


def test_missing_and_malformed_references_are_explained(store: Store) -> None:
    with pytest.raises(RegistryError, match="at least one published version"):
        resolve_version(store, "latest")
    publish_version(store, _record(70.0))
    with pytest.raises(RegistryError, match=r"got 7 which is not in .*versions: \[1\]"):
        resolve_version(store, "7")
    with pytest.raises(RegistryError, match="version number or 'latest'"):
        resolve_version(store, "newest")
