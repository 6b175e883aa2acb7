"""How long a thread may hold the GIL before another waiting one gets it, in long-running
processes (``tune_thread_switching``, called by ``collector.tune_for_a_long_running_process``).

The API process runs the HTTP loop beside threads that stay busy under ingest: the view
feed decoding and applying journeys, the refresher computing the default documents, the
store's append. A request needs the GIL several times (read, route, write), and with
CPython's default 5 ms interval each time could wait up to 5 ms a busy thread: a document
read during live ingest took ~11 ms at the median and ~64 ms at p99 (``bench/million``).
At 1 ms the busy threads hand over five times as often, for a few microseconds each.
Measured with ``python -m bench million --scale 0.1`` (100,000 customers, alternating runs in
one hour, DECISIONS, "The GIL's switch interval"): reads during live ingest p99 64.3 -> 32.4 ms.
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL = 0.001  # seconds (CPython's default: 0.005)


def tune_thread_switching() -> None:
    """Set this process's GIL switch interval to ``SWITCH_INTERVAL``."""
    sys.setswitchinterval(SWITCH_INTERVAL)
