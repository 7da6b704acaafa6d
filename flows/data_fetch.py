"""`trans-encoder data fetch`: download the STS benchmark releases and verify their checksums.

The manifest (`sts-manifest.tsv`, next to this file) lists every file of the benchmark folder with its
sha256 and its path in the public snapshot the project's reference copy was taken from (the original
SemEval / STS-Benchmark releases, STS16 renamed as SentEval does). A file is written only after its
checksum matches, under a temporary name renamed into place; files already present and valid are kept.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from trans_encoder_core.errors import BenchmarkDataError

MANIFEST = Path(__file__).with_name("sts-manifest.tsv")
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/amao0o0/SynWMD/59042a92e862db58bd01e47914345d2f52d2a4a3"
BASE_URL_ENV = "TRANS_ENCODER_DATA_URL"


@dataclass(frozen=True)
class ManifestEntry:
    local: str
    sha256: str
    remote: str


def read_manifest(path: Path = MANIFEST) -> list[ManifestEntry]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            local, sha, remote = line.split("\t")
            entries.append(ManifestEntry(local, sha, remote))
    return entries


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_file(entry: ManifestEntry, dest: Path, base_url: str, timeout: float = 60.0) -> bool:
    """Download one file unless a valid copy exists; True if it was downloaded."""
    target = dest / entry.local
    if target.is_file() and _sha256(target) == entry.sha256:
        return False
    url = f"{base_url.rstrip('/')}/{entry.remote}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) URLs only
            data = response.read()
    except OSError as exc:
        raise BenchmarkDataError(
            f"data fetch expects {url} to be downloadable, got {exc}; check the network or pass --base-url "
            f"(or set {BASE_URL_ENV}) to a mirror with the same layout.",
            path=str(target),
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise BenchmarkDataError(
            f"data fetch expects sha256 {entry.sha256} for {entry.local} (from {url}), got {digest}; the "
            "source changed or the download was corrupted: nothing was written for this file.",
            path=str(target),
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return True


def fetch_benchmarks(dest: Path, base_url: str | None = None) -> dict[str, int]:
    """Download every manifest file into `dest` (a benchmark folder for TRANS_ENCODER_DATA)."""
    base = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    entries = read_manifest()
    downloaded = sum(fetch_file(entry, dest, base) for entry in entries)
    return {"files": len(entries), "downloaded": downloaded, "kept": len(entries) - downloaded}
