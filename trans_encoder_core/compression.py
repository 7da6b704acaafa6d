"""Compressed input files: recognise gzip, bzip2, xz and zstd and decompress them whole.

The codec comes from a name's last suffix (``pairs.csv.gz``) or, for a name without one, from the
data's magic bytes. gzip, bzip2 and xz use the standard library, zstd pyarrow's bundled codec, so
no extra dependency is needed.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import zlib
from pathlib import Path

import pyarrow as pa

from trans_encoder_core.pairs import input_error

__all__ = ["COMPRESSIONS", "codec_of", "decompress", "suffixes"]

COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
# Magic bytes of each codec; none of them can start UTF-8 text or a Parquet file ("PAR1").
MAGIC = {
    "gzip": re.compile(rb"\x1f\x8b"),
    "bz2": re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)"),  # a first block, or the end of an empty stream
    "xz": re.compile(rb"\xfd7zXZ\x00"),
    "zstd": re.compile(rb"\x28\xb5\x2f\xfd"),
}


def suffixes(name: str) -> tuple[str, str]:
    """The last suffix of ``name`` (query string ignored) and the one before it, lower-cased."""
    path = Path(name.split("?", 1)[0])
    return path.suffix.lower(), Path(path.stem).suffix.lower()


def codec_of(data: bytes, name: str) -> str | None:
    """The compression of ``data``: from the name's suffix, else from its magic bytes; None if plain."""
    suffix, _ = suffixes(name)
    codec = COMPRESSIONS.get(suffix)
    detected = next((c for c, magic in MAGIC.items() if magic.match(data)), None)
    if codec is not None and detected != codec:
        raise input_error(
            name,
            f"Pair reader expects {codec} data in {name} (its name ends in {suffix}), got bytes that are not "
            f"{codec}-compressed; rename the file to its real format or compress it with {codec}.",
        )
    return codec or detected


def decompress(data: bytes, codec: str, name: str) -> bytes:
    """Decompress a whole file, naming the file and the codec when the data is damaged."""
    try:
        if codec == "gzip":
            return gzip.decompress(data)
        if codec == "bz2":
            return bz2.decompress(data)
        if codec == "xz":
            return lzma.decompress(data)
        return bytes(pa.CompressedInputStream(pa.BufferReader(data), "zstd").read())
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, pa.ArrowException) as exc:
        raise input_error(
            name,
            f"Pair reader expects complete {codec}-compressed data in {name}, got an error while "
            f"decompressing ({exc}); the file is truncated or damaged: compress or copy it again.",
        ) from exc
