"""Write-once plain objects in the store (inbox files, registry versions).

`Store.write_bytes` replaces an object atomically; the inbox and the model registry also need the other
guarantee of conventions.md §4: an object, once there, is never overwritten. On a local file system the
new object is written under a temporary name and hard-linked into place (`os.link` fails if the name
exists, atomically); on object stores the name is checked first and then written with one PUT, which
leaves a small race between two writers of the same name (the registry numbers versions, so it retries
with the next number).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from tasks.store import Store, StoreError


class ObjectExistsError(StoreError, FileExistsError):
    """A write-once object already exists under the requested name."""


def write_once(store: Store, uri: str, data: bytes) -> None:
    """Create the object `uri` with `data`; raise `ObjectExistsError` if it already exists.

    Args:
        store: The store holding `uri`.
        uri: The object's URI (validated by `Store.path`).
        data: The object's bytes.

    Raises:
        ObjectExistsError: An object is already stored under `uri`; it is left untouched.
    """
    path = store.path(uri)
    if not store.local:
        if store.fs.exists(path):
            raise _exists(uri)
        with store.fs.open(path, "wb") as fh:
            fh.write(data)
        return
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, final)
    except FileExistsError:
        raise _exists(uri) from None
    finally:
        tmp.unlink(missing_ok=True)


def _exists(uri: str) -> ObjectExistsError:
    return ObjectExistsError(
        f"Store expects a new name for a write-once object, got {uri} which already exists; "
        "choose another name (stored objects are never overwritten)."
    )
