"""The C allocator's settings for long-running processes (glibc ``mallopt``).

glibc gives each thread that allocates at the same time as another an arena of its own
(up to 8 a core) and memory freed in one arena serves no other, and after a large block is
freed it raises its mmap threshold to that block's size (up to 32 MiB), so later blocks of
that size come from the heap, where free space between live blocks is never given back.
The API process has a dozen threads (HTTP, the writer, the view feed, the refresher, the
timeline pool) and numpy columns of every size, so both grow its RSS with no live object
behind it. Two arenas and a fixed 1 MiB mmap threshold (blocks above it are mapped and
unmapped on their own) measured at 100,000 customers (``python -m bench million --scale
0.1``, one run each, as environment variables): the API's peak 873 -> 693 MiB during live
ingest, 444 -> 415 MiB at the end of the catch-up, with no latency worse.

Call ``tune_allocator`` first thing in a long-running process, before it starts threads:
arenas made before stay. Elsewhere than glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

ARENA_MAX = 2
MMAP_THRESHOLD = 1 << 20  # bytes; fixed, so glibc no longer raises it after large frees
TRIM_THRESHOLD = 4 << 20  # free space at the top of the heap given back beyond this

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_allocator() -> dict[str, int]:
    """Apply the settings above; returns those glibc accepted (empty: not glibc)."""
    mallopt = _mallopt()
    if mallopt is None:
        return {}
    applied = {}
    for name, parameter, value in (("arena_max", _M_ARENA_MAX, ARENA_MAX),
                                   ("mmap_threshold", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                   ("trim_threshold", _M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        if mallopt(parameter, value) == 1:
            applied[name] = value
        else:
            log.warning("mallopt refused %s=%d", name, value)
    return applied


def _mallopt():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl has a mallopt that ignores these
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
