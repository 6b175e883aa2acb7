"""The cyclic garbage collector in touchpoints' processes: a process-wide switch, so the
application shells (ingest, replay, the fold shell, the live views, the processors) set
it, never the projections.

Folding, summarising and attributing millions of events allocate short-lived tuples that
form no reference cycles; reference counting frees them, while every cyclic collection
rescans the large, long-lived state (measured: 20-40 % of a bulk fold). Two tools:

- ``collector_paused``: no cyclic collection during a block of bulk work.
- ``settle_long_lived_state``: in a long-running process (the API's live views, the
  worker's journeys), what survives a young collection is frozen, so the collector's
  full passes never walk the population. Without it a full pass over a million
  customers' views held the API's GIL for ~2.7 s at a time (``bench/million``: default
  documents' p99 2.7 s during live ingest, 0.5-0.6 s at 100,000 customers), and the
  worker's event loop likewise. The state makes no reference cycles and is freed by
  reference counting when replaced; a cycle that dies after it was frozen is never
  collected, so ``CollectorPauses`` reports the frozen count beside the pauses. Counting
  walks every frozen object (``gc.get_freeze_count`` is a list walk: 0.48 s for 20M
  objects here), so the count is taken at most every ``FROZEN_COUNT_EVERY``: the worker,
  which writes its stats every second, spent half a core on it at a million customers.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# seconds: the young generations hold at most this long's survivors, and a settle's pause (it
# walks them, holding the GIL) is about that long's allocations: at 1.0 the API's were ~40 ms
# at a million customers under live ingest, ~4 % of the time, where reads waited for them;
# at 0.25 in one process: p50 / p90 3.3 / 4.6 ms against 13.3 / 24.6 at 1.0, the same in all
SETTLE_EVERY = 0.25
FROZEN_COUNT_EVERY = 600.0  # seconds between counts of the frozen objects (a walk of all of them)


@contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector (not reference counting) for the block; restore
    it as the caller had it. ``freeze``: move what the block built to the permanent
    generation first, so later collections never rescan it (state that lives on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()


class _Settler:
    """At most one settle a ``SETTLE_EVERY``, from any thread; none in a process that
    was not tuned as a long-running one (tests, CLI commands: their objects are not frozen)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = float("-inf")
        self.enabled = False

    def settle(self, now: float) -> bool:
        with self._lock:
            if not self.enabled or now - self._last < SETTLE_EVERY:
                return False
            self._last = now
        gc.collect(1)  # the garbage cycles among young objects go first: only survivors are frozen
        gc.freeze()
        return True


_SETTLER = _Settler()


def settle_long_lived_state(now: float | None = None) -> bool:
    """Call after a batch of changes to a long-running process's state. In a process tuned
    by ``tune_for_a_long_running_process``, at most once a ``SETTLE_EVERY``: collect the young generations, then freeze what survived (O(1)),
    so later collections scan only what was allocated since. Returns whether it did."""
    if not gc.isenabled():  # bulk work under ``collector_paused``: nothing is collected now anyway
        return False
    return _SETTLER.settle(time.monotonic() if now is None else now)


def freeze_loaded_state() -> bool:
    """Call, the collector paused, once a long-running process loaded a large state whole
    (the views' state taken up): it goes straight out of the collector's passes, where the
    first young collection would have walked all of it (~3 s at a million customers).
    Returns whether it froze (a process not tuned as long-running freezes nothing)."""
    if not _SETTLER.enabled:
        return False
    gc.freeze()
    return True


class CollectorPauses:
    """The cyclic collector's pauses in this process, by generation (``gc.callbacks``):
    collections, seconds in all and the longest, the unreachable objects they freed, and
    how many objects are frozen."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self.collected = [0, 0, 0]  # unreachable objects found: the cyclic garbage there was to free
        self._started = 0.0
        self._installed = False
        self._frozen: tuple[int, float] | None = None  # (count, monotonic time it was taken)

    def install(self) -> "CollectorPauses":
        if not self._installed:
            gc.callbacks.append(self._on_collection)
            self._installed = True
        return self

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._on_collection)
            self._installed = False

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.collections[generation] += 1
        self.seconds[generation] += took
        self.longest[generation] = max(self.longest[generation], took)
        self.collected[generation] += info.get("collected", 0)

    def frozen_objects(self, now: float | None = None) -> tuple[int, float]:
        """How many objects are frozen, and how many seconds ago that was counted (a new
        count once the last is ``FROZEN_COUNT_EVERY`` old)."""
        now = time.monotonic() if now is None else now
        if self._frozen is None or now - self._frozen[1] >= FROZEN_COUNT_EVERY:
            self._frozen = (gc.get_freeze_count(), now)
        count, counted_at = self._frozen
        return count, now - counted_at

    def stats(self, now: float | None = None) -> dict[str, Any]:
        frozen, age = self.frozen_objects(now)
        return {
            "frozen_objects": frozen,
            "frozen_counted_seconds_ago": round(age, 1),
            "generations": [
                {"generation": generation, "collections": self.collections[generation],
                 "seconds": round(self.seconds[generation], 6), "longest_seconds": round(self.longest[generation], 6),
                 "collected": self.collected[generation]}
                for generation in range(3)
            ],
        }


PAUSES = CollectorPauses()


def tune_for_a_long_running_process() -> None:
    """Call once a server or worker process has started up. Every ingested event allocates
    a few dozen short-lived objects; with default thresholds the cyclic collector runs so
    often (and rescans every long-lived object) that it costs 15-20% of ingestion CPU.
    Freezing what startup built and collecting the young generation less often removes
    most of that. From here on the pauses are recorded and ``settle_long_lived_state``
    freezes what survives."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    PAUSES.install()
    _SETTLER.enabled = True
