"""Object storage for stage outputs: one fsspec root, write-once artifacts, atomic commits.

Every stage output is an *artifact*: a folder of files under the store root plus a commit marker
`_COMMIT.json` that records each file's size and sha256 and the stage's metadata. A folder without a
valid marker is never taken as finished:
- on a local file system the folder is assembled under a temporary name and renamed into place with
  the marker inside (the rename is the commit);
- on object stores (S3, memory) the files are uploaded first and the marker last.
Each commit step calls a test hook (`tasks/hooks.py`), inert unless a test sets it, so the crash tests
can kill a process at an exact step of a commit.
A committed artifact is never overwritten: a second writer of the same key keeps the first copy.

Remote stores take their options from the environment, never from files in the repository:
`TRANS_ENCODER_S3_ENDPOINT` (an S3-compatible endpoint such as MinIO) and `TRANS_ENCODER_STORAGE_OPTIONS`
(a JSON object keyed by protocol, e.g. `{"s3": {"config_kwargs": {"connect_timeout": 5}}}`); credentials
come from the provider's standard variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, profiles,
instance roles), which fsspec reads itself, so they are never passed through, logged or stored here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from tasks.hooks import hook
from trans_encoder_core.errors import TransEncoderError

logger = logging.getLogger(__name__)

COMMIT_FILE = "_COMMIT.json"
SUPPORTED_SCHEMES = ("file", "local", "memory", "s3", "s3a", "gs", "gcs", "az", "abfs")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,199}$")
CACHE_ENV = "TRANS_ENCODER_CACHE"
S3_ENDPOINT_ENV = "TRANS_ENCODER_S3_ENDPOINT"
STORAGE_OPTIONS_ENV = "TRANS_ENCODER_STORAGE_OPTIONS"


class StoreError(TransEncoderError, ValueError):
    """A store URL, key or stored object is not usable."""


class ObjectExistsError(StoreError, FileExistsError):
    """A write-once object already exists under the requested name."""

    @classmethod
    def at(cls, uri: str) -> ObjectExistsError:
        return cls(
            f"Store expects a new name for a write-once object, got {uri} which already exists; "
            "choose another name (stored objects are never overwritten)."
        )


class StoreIntegrityError(TransEncoderError, OSError):
    """Downloaded bytes do not match an artifact's recorded checksums (an I/O fault: retried)."""


def env_storage_options(scheme: str) -> dict[str, Any]:
    """fsspec options for `scheme` from the environment (see the module docstring)."""
    raw = os.environ.get(STORAGE_OPTIONS_ENV, "").strip()
    try:
        by_protocol = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise StoreError(
            f"{STORAGE_OPTIONS_ENV} expects a JSON object keyed by protocol, got invalid JSON ({exc.msg}); "
            'set it like {"s3": {"config_kwargs": {"connect_timeout": 5}}} or unset it.'
        ) from None
    if not isinstance(by_protocol, dict) or not all(isinstance(v, dict) for v in by_protocol.values()):
        raise StoreError(
            f"{STORAGE_OPTIONS_ENV} expects a JSON object keyed by protocol with an object of options each, "
            f'got {raw[:80]!r}; set it like {{"s3": {{"config_kwargs": {{"connect_timeout": 5}}}}}}.'
        )
    options = dict(by_protocol.get(scheme, {}))
    endpoint = os.environ.get(S3_ENDPOINT_ENV, "").strip()
    if scheme in ("s3", "s3a"):
        if endpoint:
            options.setdefault("endpoint_url", endpoint)
        options.setdefault("use_listings_cache", False)  # other runs write to the same bucket
    return options


def safe_segment(value: str, what: str) -> str:
    """Validate one path segment (a run name, a file name): no separators, no '..', no absolute paths."""
    if not _SEGMENT.match(value) or value in (".", ".."):
        raise StoreError(
            f"Store expects {what} made of letters, digits, '.', '_', '=' or '-' (not starting with '.' "
            f"and without '/'), got {value!r}; rename it so it cannot escape the store root."
        )
    return value


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def digest_json(data: Any) -> str:
    """sha256 of a canonical JSON encoding."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A committed stage output: its URI, the digest of its file manifest, and its metadata."""

    uri: str
    digest: str
    meta: dict[str, Any]


class Store:
    """A store root given as a local path or any supported fsspec URL."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        scheme = root.split("://", 1)[0] if "://" in root else "file"
        if scheme not in SUPPORTED_SCHEMES:
            raise StoreError(
                f"Store expects a local path or a URL with one of {', '.join(SUPPORTED_SCHEMES)}, got "
                f"{root!r}; use e.g. ./te-store, memory://te or s3://bucket/prefix."
            )
        options = {**env_storage_options(scheme), **(storage_options or {})}
        self.fs, base = fsspec.core.url_to_fs(root, **options)
        self.local = "file" in _protocols(self.fs)
        self.base = base.rstrip("/")
        self.scheme = "file" if self.local else scheme
        self.root = f"{self.scheme}://{self.base}" if not self.local else self.base
        if self.local and os.path.exists(self.base) and not os.path.isdir(self.base):
            raise StoreError(
                f"Store expects a folder at {self.base}, got a regular file; pass --store a folder path "
                "(it is created if missing) or move that file away."
            )

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    # -- keys and paths ------------------------------------------------------------------------
    def uri(self, *parts: str) -> str:
        """The URI of a key under the root; every part is validated (see `safe_segment`)."""
        for part in parts:
            safe_segment(part, "a store key segment")
        return "/".join([self.root, *parts])

    def path(self, uri: str) -> str:
        """The file-system path of a URI inside this store (rejects URIs outside the root)."""
        prefix = self.root + "/"
        if not uri.startswith(prefix):
            raise StoreError(f"Store {self.root!r} expects a URI under it, got {uri!r}.")
        rest = uri[len(prefix) :]
        for part in rest.split("/"):
            safe_segment(part, "a store key segment")
        return f"{self.base}/{rest}"

    def contains(self, uri: str) -> bool:
        return uri.startswith(self.root + "/")

    # -- committed artifacts ---------------------------------------------------------------------
    def read_commit(self, uri: str) -> dict[str, Any] | None:
        marker = f"{self.path(uri)}/{COMMIT_FILE}"
        try:
            with self.fs.open(marker, "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            logger.warning("commit marker of %s is unreadable; treating the artifact as missing", uri)
            return None

    def verify(self, uri: str, *, deep: bool = True) -> Artifact | None:
        """The artifact if it is committed and every file matches its recorded size (and sha256)."""
        commit = self.read_commit(uri)
        if commit is None:
            return None
        base = self.path(uri)
        for rel, rec in commit["files"].items():
            path = f"{base}/{rel}"
            try:
                size = self.fs.size(path)
            except FileNotFoundError:
                logger.warning("%s: file %s is missing; the artifact will be recomputed", uri, rel)
                return None
            if size != rec["size"] or (deep and self._sha256(path) != rec["sha256"]):
                logger.warning("%s: file %s does not match its checksum; it will be recomputed", uri, rel)
                return None
        return Artifact(uri, digest_json(commit["files"]), commit.get("meta", {}))

    def _sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def commit_dir(self, local_dir: Path, uri: str, meta: dict[str, Any]) -> Artifact:
        """Store the files of `local_dir` as the artifact `uri`, write-once and atomically."""
        files = {
            p.relative_to(local_dir).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(local_dir.rglob("*"))
            if p.is_file() and p.name != COMMIT_FILE
        }
        commit = {"files": files, "meta": meta}
        existing = self.verify(uri)
        if existing is not None:
            logger.info("%s is already committed; keeping the first copy", uri)
            return existing
        self._set_aside_invalid(uri)
        if self.local and not self._commit_local(local_dir, uri, commit):
            winner = self.verify(uri)  # another writer committed first: hand out its copy, not ours
            if winner is None:
                raise StoreIntegrityError(f"{uri} was committed concurrently but does not verify; rerun.")
            return winner
        if not self.local:
            self._commit_remote(local_dir, uri, commit)
        _hook("commit-published", uri)
        return Artifact(uri, digest_json(files), meta)

    def _set_aside_invalid(self, uri: str) -> None:
        """Move an invalid (uncommitted, truncated or altered) folder out of the way; never delete it."""
        path = self.path(uri)
        if not self.fs.exists(path) or self.verify(uri) is not None:  # absent, or just committed by another
            return
        parent, name = path.rsplit("/", 1)
        aside = f"{parent}/.{name}.invalid-{uuid.uuid4().hex[:8]}"
        logger.warning("%s exists but is not a valid artifact; moving it to %s", uri, aside)
        try:
            if self.local:
                os.rename(path, aside)
            else:
                self.fs.mv(path, aside, recursive=True)
        except FileNotFoundError:  # another writer moved it first
            pass

    def _commit_local(self, local_dir: Path, uri: str, commit: dict[str, Any]) -> bool:
        """Rename a complete copy into place; False when another writer committed first."""
        final = Path(self.path(uri))
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for i, rel in enumerate(commit["files"]):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(local_dir / rel, tmp / rel)
                if i == 0:
                    _hook("commit-partial", uri)
            _hook("commit-unmarked", uri)
            (tmp / COMMIT_FILE).write_text(json.dumps(commit, indent=1, sort_keys=True))
        except Exception:  # e.g. a full disk: leave no partial copy behind (a kill leaves a hidden one)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _hook("commit-marked", uri)
        try:
            os.rename(tmp, final)  # atomic; fails if another writer committed first
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if self.read_commit(uri) is None:
                raise
            logger.info("%s was committed concurrently; keeping the first copy", uri)
            return False
        return True

    def _commit_remote(self, local_dir: Path, uri: str, commit: dict[str, Any]) -> None:
        base = self.path(uri)
        for i, rel in enumerate(commit["files"]):
            self.fs.put_file(str(local_dir / rel), f"{base}/{rel}")
            if i == 0:
                _hook("commit-partial", uri)
        _hook("commit-unmarked", uri)
        with self.fs.open(f"{base}/{COMMIT_FILE}", "wb") as fh:
            fh.write(json.dumps(commit, indent=1, sort_keys=True).encode())
        _hook("commit-marked", uri)

    def local_copy(self, uri: str, artifact: Artifact | None = None) -> Path:
        """A local folder with the artifact's files: the folder itself on a local store, else a
        download into a cache keyed by the artifact's content digest."""
        art = artifact or self.verify(uri, deep=False)
        if art is None:
            raise StoreError(f"Store expects a committed artifact at {uri}, found none; rerun the stage.")
        if self.local:
            return Path(self.path(uri))
        cache = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "trans-encoder")) / "artifacts"
        target = cache / art.digest
        if (target / COMMIT_FILE).is_file():
            return target
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
        self.fs.get(self.path(uri) + "/", str(tmp), recursive=True)
        self._check_download(uri, tmp, art.digest)
        if not target.exists():
            os.rename(tmp, target)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _check_download(self, uri: str, folder: Path, digest: str) -> None:
        """Check a downloaded copy against the commit it came with and the digest it is cached under
        (a torn download, or one mixed with a concurrent re-commit, fails)."""
        marker = folder / COMMIT_FILE
        commit = json.loads(marker.read_text()) if marker.is_file() else None
        if commit is None:
            bad = "no commit marker"
        elif digest_json(commit["files"]) != digest:
            bad = "it was re-committed while downloading"
        else:
            bad = next(
                (
                    f"file {rel} does not match its checksum"
                    for rel, rec in commit["files"].items()
                    if not _file_matches(folder / rel, rec)
                ),
                None,
            )
        if bad is not None:
            shutil.rmtree(folder, ignore_errors=True)
            raise StoreIntegrityError(f"Download of {uri} is not a complete artifact ({bad}); it is retried.")

    # -- plain objects (reports, ledgers, checkpoints) -----------------------------------------
    def exists(self, uri: str) -> bool:
        return bool(self.fs.exists(self.path(uri)))

    def read_bytes(self, uri: str) -> bytes:
        with self.fs.open(self.path(uri), "rb") as fh:
            return fh.read()

    def write_once(self, uri: str, data: bytes) -> None:
        """Create the object `uri` with `data`, never replacing one (inbox files, registry versions).

        Locally the bytes go to a temporary name that is hard-linked into place (`os.link` fails if the
        name exists, atomically); on object stores the name is checked and then written with one PUT,
        which leaves a small race between two writers of one name (the registry retries with the next
        version number).

        Raises:
            ObjectExistsError: An object is already stored under `uri`; it is left untouched.
        """
        path = self.path(uri)
        if not self.local:
            if self.fs.exists(path):
                raise ObjectExistsError.at(uri)
            with self.fs.open(path, "wb") as fh:
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
            raise ObjectExistsError.at(uri) from None
        finally:
            tmp.unlink(missing_ok=True)

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Replace one object atomically (temporary name + rename locally; one PUT remotely)."""
        if self.local:
            self.write_with(uri, lambda tmp: Path(tmp).write_bytes(data))
        else:
            with self.fs.open(self.path(uri), "wb") as fh:
                fh.write(data)

    def write_with(self, uri: str, writer: Callable[[str], None]) -> None:
        """Replace one object atomically with the file `writer(local_path)` writes, without holding
        its bytes in memory (a checkpoint is ~4x the model's size): locally a temporary name in the
        same folder, synced and renamed into place; remotely a temporary local file, then one upload.
        """
        path = self.path(uri)
        if not self.local:
            with tempfile.TemporaryDirectory(prefix="te-upload-") as folder:
                local = os.path.join(folder, "object")
                writer(local)
                self.fs.put_file(local, path)
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            writer(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def write_json(self, uri: str, data: Any) -> None:
        self.write_bytes(uri, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_bytes(uri))

    def delete(self, uri: str) -> None:
        """Remove an object or folder; best effort (leftovers such as old checkpoints are harmless,
        and a concurrent run of the same stage may be removing or writing it at the same time)."""
        path = self.path(uri)
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except OSError as exc:
            logger.warning("could not delete %s (%s); leaving it", uri, exc)


def _hook(point: str, uri: str) -> None:
    """Test hook at a commit step (tasks/hooks.py), named by the artifact's stage and key."""
    stage, key = uri.rstrip("/").rsplit("/", 2)[-2:]
    hook(point, stage, key)


def _file_matches(path: Path, record: dict[str, Any]) -> bool:
    return path.is_file() and path.stat().st_size == record["size"] and sha256_file(path) == record["sha256"]


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)
