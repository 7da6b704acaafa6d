"""Read a zip that is split into plain byte pieces (``name.zip.001``, ``.002``, ...) without joining it.

``ConcatReader`` presents the pieces as one seekable read-only file, which is all ``zipfile`` needs,
so a 400 MB split zip is extracted without writing its 400 MB concatenation first.
"""

from __future__ import annotations

import bisect
import hashlib
import io
from pathlib import Path
from typing import BinaryIO


class ConcatReader(io.RawIOBase):
    """The byte concatenation of several files, readable and seekable like one file."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._handles: list[BinaryIO] = [Path(p).open("rb") for p in paths]
        self._starts: list[int] = []
        total = 0
        for handle in self._handles:
            self._starts.append(total)
            total += handle.seek(0, io.SEEK_END)
        self._size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            index = bisect.bisect_right(self._starts, self._pos) - 1
            handle = self._handles[index]
            end = self._starts[index + 1] if index + 1 < len(self._starts) else self._size
            handle.seek(self._pos - self._starts[index])
            count = handle.readinto(view[done : done + min(len(view) - done, end - self._pos)])
            if not count:  # a piece shrank while open
                break
            done += count
            self._pos += count
        return done

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        super().close()


def hash_parts(paths: list[Path], chunk: int = 1 << 20) -> tuple[int, str]:
    """Total size and sha256 of the pieces' concatenation, read once in order."""
    digest = hashlib.sha256()
    size = 0
    for path in paths:
        with Path(path).open("rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
                size += len(block)
    return size, digest.hexdigest()
