"""glibc heap kept between training steps (trans_encoder_core/allocator.py)."""

from __future__ import annotations

import os

import pytest

from tests.script_run import run_script

# mallinfo2 (glibc >= 2.33): `hblkhd` = bytes in mmap-served blocks, `arena` = bytes in the heap.
SCRIPT = """
import ctypes, json, torch
from trans_encoder_core.allocator import _glibc, keep_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

libc = _glibc()
if libc is None or not hasattr(libc, "mallinfo2"):
    print(json.dumps({"skip": "not glibc >= 2.33"}))
    raise SystemExit
libc.mallinfo2.restype = MallInfo2
kept = keep_heap()
before = libc.mallinfo2().hblkhd
block = torch.zeros(30522, 384)  # MiniLM's word-embedding gradient, 47 MB
during = libc.mallinfo2()
del block
after_free = libc.mallinfo2()
print(json.dumps({"kept": kept, "mmapped_growth": during.hblkhd - before,
                  "heap_after_free": after_free.arena, "again": keep_heap()}))
"""


def _run(**env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = run_script(SCRIPT, environ, timeout=120)
    if "skip" in out:
        pytest.skip(str(out["skip"]))
    return out


def test_a_large_block_comes_from_the_heap_and_stays_there() -> None:
    out = _run()
    assert out["kept"] is True and out["again"] is True
    assert out["mmapped_growth"] == 0  # glibc's default serves a 47 MB block with a fresh mmap
    assert out["heap_after_free"] >= 30522 * 384 * 4  # freed, not trimmed: the next step reuses it


def test_without_it_glibc_maps_the_block() -> None:
    # the control: the check above could not pass by accident
    out = _run(TRANS_ENCODER_KEEP_HEAP="0")
    assert out["kept"] is False
    assert out["mmapped_growth"] >= 30522 * 384 * 4


def test_the_users_own_glibc_settings_win() -> None:
    out = _run(MALLOC_TRIM_THRESHOLD_="1000000")
    assert out["kept"] is False
