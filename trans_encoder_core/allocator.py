"""Keep freed CPU memory in the process heap so training steps do not page-fault (glibc only).

glibc's malloc serves every block above its mmap threshold (at most 32 MB) with a fresh `mmap` and
gives it back with `munmap` when freed, and trims the top of the heap when more than the trim
threshold is free. A training step allocates and frees the same large blocks every time: the word
embedding's dense gradient alone is 30,522 x 384 floats (47 MB) for MiniLM. Each fresh mapping is
zero-filled by the kernel page by page on first touch: measured on this project's 2-core CPU, a
`torch.zeros(30522, 384)` costs 16.5 ms from fresh pages and 0.7 ms from reused heap memory, and a
packed bf16 bi-encoder step (128 pairs) 0.60 s against 0.43 s with the heap kept
(`python bench/packing_speed.py --threads 2 --rounds 3 --bi-steps 5 --variants packed_bf16_fast`
with and without `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`).

Threads make it worse: each thread that allocates gets its own glibc arena, whose heaps are mmapped
and unmapped as they grow and shrink, and Prefect runs every task on a worker thread. End to end,
the identical-work run (`python bench/identical_work.py --variants
auto+packing+fast+bf16-scoring+glibc-heap auto+packing+fast+bf16-scoring`,
bench/results/identical-work-cpu-amd-heap-ab.json) had 0.81 M minor page faults and 27.3 s of system
CPU with the options below against 4.47 M and 40.5 s without; its wall clock moved less than the
machine's noise (185.4 against 186.4 s).

`keep_heap()` sets, at run time with `mallopt`: one arena for all threads, no mmap-served blocks and
no trimming, so the blocks a step frees are reused by the next one. What is computed does not change
(only where memory comes from); the process keeps its peak heap until it exits, which a training run
holds anyway. The arena limit only counts if it is set before a second thread allocates (glibc fixes
it then): the CLI calls `keep_heap()` first thing; a process that Prefect's engine starts (a
deployment run) has threads already, so prefect.yaml sets glibc's MALLOC_ARENA_MAX=1 in the run's
environment, and the flow and `training.fit` set the other two (`fit` also for library use). Off with
TRANS_ENCODER_KEEP_HEAP=0; a no-op where the C library is not glibc or where the user set glibc's
own MALLOC_MMAP_* / MALLOC_TRIM_* variables.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_TRIM_NEVER = 2**31 - 1  # mallopt takes an int: ~2 GiB of free heap top before a trim

_GLIBC_VARIABLES = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
)

_done: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None  # musl or another libc: nothing to tune
    return libc


def keep_heap() -> bool:
    """One glibc arena, no mmap-served blocks, no heap trimming for this process (once; idempotent).

    Returns whether the options are in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("TRANS_ENCODER_KEEP_HEAP", "1") == "0":
        return False
    if any(name in os.environ for name in _GLIBC_VARIABLES):
        return False  # the user tuned glibc directly: theirs wins
    libc = _glibc()
    if libc is None:
        return False
    ok = all(
        libc.mallopt(param, value)
        for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, _TRIM_NEVER))
    )
    _done = ok
    logger.debug("glibc heap kept between steps: %s", ok)
    return ok
