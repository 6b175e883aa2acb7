"""The log position of the last event on each partition of ``touchpoints.events``, up to a
head: what a view server fed from Kafka compares the journeys' folds with to tell whether
every event up to the head is in its views, with no relay or worker to ask (``touchpoints
serve`` against an external Kafka; ``consumers.api.app.journeys_views_health``).

The relay publishes each event keyed by its stream, so its partition is the default
partitioner's for the stream name (``partition_for_key``), whatever the relay did or has
not done yet. The first call reads the log backwards in growing windows until every
partition was seen (or the log's start); later calls read only what was appended since.
"""

from __future__ import annotations

import threading

from events.store import EventStore
from streams.topics import partition_for_key

FIRST_WINDOW = 1_024  # positions read back from the head at first; doubled until every partition is seen


class PartitionTails:
    def __init__(self, store: EventStore):
        self.store = store
        self._lock = threading.Lock()  # health checks run on a thread pool
        self._partitions: int | None = None
        self._through: int | None = None  # the head read through so far
        self._last: dict[int, int] = {}
        self._partition_of: dict[str, int] = {}  # murmur2 in Python costs a few µs: remembered per stream

    def through(self, head: int | None, partitions: int) -> dict[int, int]:
        """Per partition (of ``partitions``), the position of its last event up to ``head``
        (None: an empty log). A head lower than one asked before gets the later tails: a
        readiness check then waits for more, never for less."""
        if head is None:
            return {}
        with self._lock:
            if partitions != self._partitions or self._through is None:
                self._partitions, self._partition_of = partitions, {}
                self._last = self._read_back(head)
                self._through = head
            elif head > self._through:
                self._last.update(self._read(self._through + 1, head))
                self._through = head
            return dict(self._last)

    def _read_back(self, head: int) -> dict[int, int]:
        found: dict[int, int] = {}
        window, end = FIRST_WINDOW, head
        while True:
            start = max(0, end - window + 1)
            for partition, position in self._read(start, end).items():
                found.setdefault(partition, position)  # a later window's is the later event
            if len(found) == self._partitions or start == 0:
                return found
            window, end = window * 2, start - 1

    def _read(self, start: int, end: int) -> dict[int, int]:
        """The last position of each partition among the events from ``start`` to ``end``."""
        last: dict[int, int] = {}
        for event in self.store.read_all(start):
            if event.position > end:
                break
            last[self._partition(event.stream)] = event.position
        return last

    def _partition(self, stream: str) -> int:
        partition = self._partition_of.get(stream)
        if partition is None:
            if len(self._partition_of) > 100_000:  # bounded: new customers keep coming
                self._partition_of.clear()
            partition = self._partition_of[stream] = partition_for_key(stream, self._partitions)
        return partition
