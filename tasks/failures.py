"""Operating-system errors that retrying cannot fix, turned into one clear line.

A full disk (ENOSPC, EDQUOT), a path through a regular file (ENOTDIR), a folder where a file belongs
(EISDIR), a read-only file system (EROFS) and missing permissions (EACCES, EPERM) fail the same way
on every attempt: the stage fails at once with a `StoreWriteError` (a `TransEncoderError`, reported
as one `error:` line with exit status 2) that names the path, what was expected and the fix. Only
transient faults (connection errors, timeouts, throttling) are retried (`tasks.stages.is_transient`).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from tasks.store import Store, StoreError

DETERMINISTIC_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.EACCES}
    | {errno.EPERM, errno.ENAMETOOLONG}
)


class StoreWriteError(StoreError):
    """The store (or another local path) cannot be written, and retrying would not change that."""


def is_deterministic_os_error(exc: BaseException) -> bool:
    """Whether `exc` is an OSError that fails the same way on every attempt (see the module doc)."""
    return isinstance(exc, OSError) and exc.errno in DETERMINISTIC_ERRNOS


def human_size(n: int) -> str:
    """Bytes as a short human-readable size (1.5 MB)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover - unreachable


def folder_size(folder: Path) -> int:
    """The total size of the files under `folder` (0 if it is gone)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _free_space(path: str) -> str:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return human_size(shutil.disk_usage(probe).free)
    except OSError:
        return "unknown"


def os_error_message(
    exc: OSError, *, store: Store | None = None, stage: str | None = None, needed: int | None = None
) -> str:
    """One line for a deterministic OSError: where it happened, what was expected, the fix."""
    target = str(exc.filename) if exc.filename else (store.root if store else "a file")
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    in_store = store is not None and store.local and target.startswith(store.base)
    where = f"Store {store.root}" if in_store and store else (f"Stage {stage}" if stage else "trans-encoder")
    what = f"{where} could not write {target}" if in_store else f"{where} failed on {target}"
    got = f"got '{exc.strerror or exc}' ({code})"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        need = f"the stage's output needs {human_size(needed)}, " if needed else ""
        return (
            f"{what}: it expects free space, {got}; {need}{_free_space(target)} is free there; free "
            "space or pass --store on a larger disk, then rerun (finished stages are reused)."
        )
    if exc.errno == errno.ENOTDIR:
        return (
            f"{what}: every part of the path must be a folder, {got} (a part of it is a regular file); "
            "pass --store a folder path (it is created if missing) or move that file away."
        )
    if exc.errno == errno.EISDIR:
        return f"{what}: it expects a file there, {got}; remove that folder or choose another path."
    if exc.errno == errno.EROFS:
        return f"{what}: it expects a writable file system, {got}; pass --store a writable folder."
    if exc.errno == errno.ENAMETOOLONG:
        return f"{what}: it expects a shorter path, {got}; use a store root with a shorter path."
    return (
        f"{what}: it expects permission to read and write there, {got}; fix the permissions of that "
        "folder or pass --store a folder you can write."
    )


def store_write_error(
    exc: OSError, *, store: Store | None = None, stage: str | None = None, needed: int | None = None
) -> StoreWriteError:
    """`exc` as a `StoreWriteError` with `os_error_message`'s line."""
    return StoreWriteError(os_error_message(exc, store=store, stage=stage, needed=needed))
