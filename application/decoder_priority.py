"""Decoding processes run at a lower CPU priority than the process that appends.

Appending is the serial part of ingestion: one writer, one transaction at a time.
Decoding (parsing, validation, encoding) is spread over worker processes and costs
more CPU an event than appending. On equal priority the kernel shares the cores equally
between every runnable process, so with two decoders and one writer on two cores the
writer waits for a core part of the time, and the whole pipeline with it. At niceness
+10 the writer (and the API server's event loop, which answers reads meanwhile) runs
whenever it can and the decoders take the rest; on a machine shared with the live
platform, a backfill's decoders also yield to it.
"""

from __future__ import annotations

import os

DECODER_NICENESS = 10


def lower_decoder_priority(increment: int = DECODER_NICENESS) -> int | None:
    """Raise this process's niceness by ``increment`` (the kernel caps it at 19). The new
    niceness, or None where the platform has none or refuses (the decoder runs anyway)."""
    nice = getattr(os, "nice", None)
    if nice is None:
        return None
    try:
        return nice(increment)
    except OSError:
        return None
