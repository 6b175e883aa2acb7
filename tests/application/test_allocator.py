"""The C allocator's settings for long-running processes (application.allocator)."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

from application.allocator import ARENA_MAX, MMAP_THRESHOLD, TRIM_THRESHOLD, tune_allocator

glibc = pytest.mark.skipif(not (ctypes.util.find_library("c") or "").startswith("libc.so"),
                           reason="the settings are glibc's; this machine's C library is another")


@glibc
def test_tune_allocator__glibc_accepts_every_setting():
    # when a process tunes its allocator (a fresh one: the settings stay for its life)
    applied = subprocess.run(
        [sys.executable, "-c", "from application.allocator import tune_allocator; print(tune_allocator())"],
        check=True, capture_output=True, text=True,
    ).stdout

    # then glibc took the three settings
    assert applied.strip() == str({"arena_max": ARENA_MAX, "mmap_threshold": MMAP_THRESHOLD,
                                   "trim_threshold": TRIM_THRESHOLD})


@glibc
def test_tune_allocator__large_blocks_freed_are_given_back_to_the_system():
    # given a tuned process that freed a 16 MiB block (which raises glibc's default mmap threshold)
    script = """
import ctypes, sys
from application.allocator import tune_allocator
if sys.argv[1] == "tuned":
    tune_allocator()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free(ctypes.c_void_p(libc.malloc(16 << 20)))

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

before = rss()
blocks = [libc.malloc(4 << 20) for _ in range(16)]  # 64 MiB of 4 MiB blocks, written
for block in blocks:
    ctypes.memset(block, 1, 4 << 20)
for block in blocks[:-1]:  # the last one keeps the heap's top in use
    libc.free(ctypes.c_void_p(block))
print(rss() - before)
"""

    def kept(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", script, mode], check=True, capture_output=True, text=True)
        return int(out.stdout)

    # when it frees 60 of 64 MiB of 4 MiB blocks, then an untuned process the same
    tuned, untuned = kept("tuned"), kept("untuned")

    # then the tuned one gave them back (they were mapped on their own); the untuned kept them in its heap
    assert tuned < 8 << 20
    assert untuned > 48 << 20
