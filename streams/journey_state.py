"""The journey processor's state: one journey per identity stream of each partition it owns.

Pure apart from decoding: no Kafka here, so tests and the benches fold records directly;
``streams.processors`` feeds it batches, restores it from the journeys changelog and
publishes what a batch touched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from events.registry import REGISTRY, EventRegistry, InvalidEvent
from projections.journey import IdentityJourney, JourneyFormatError

from streams.topics import MalformedRecord, record_decoder

log = logging.getLogger(__name__)


@dataclass
class FoldResult:
    touched: dict[str, IdentityJourney] = field(default_factory=dict)
    applied: int = 0  # events that changed a journey
    duplicates: int = 0  # events a journey had already applied
    undecodable: list[str] = field(default_factory=list)  # why records were skipped


class JourneyState:
    """The journeys of the partitions this worker owns: ``partition -> {key: journey}``.

    Pure apart from decoding: no Kafka here, so tests and the bench fold records directly."""

    def __init__(self, registry: EventRegistry = REGISTRY):
        self.registry = registry
        self.partitions: dict[int, dict[str, IdentityJourney]] = {}
        self.unreadable: dict[int, int] = {}  # partition -> journeys its restore left out

    def owns(self, partition: int) -> bool:
        return partition in self.partitions

    def restore(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        """Rebuild a partition from its journeys changelog (oldest first; the last record
        of a key wins, ``None`` deletes); returns how many journeys it holds. Unreadable
        journeys (another format version, or damaged) are left out and counted in
        ``unreadable``: only their events can rebuild them."""
        journeys: dict[str, IdentityJourney] = {}
        unreadable: dict[str, JourneyFormatError] = {}
        for key, value in records:
            if key is None:
                continue
            name = key.decode()
            unreadable.pop(name, None)
            if value is None:
                journeys.pop(name, None)
                continue
            try:
                journeys[name] = IdentityJourney.from_bytes(value)
            except JourneyFormatError as error:
                unreadable[name] = error
                journeys.pop(name, None)
        if unreadable:
            name, error = next(iter(unreadable.items()))
            log.warning("%d journeys on partition %d unreadable (e.g. %s: %s): left out",
                        len(unreadable), partition, name, error)
        self.partitions[partition] = journeys
        self.unreadable[partition] = len(unreadable)
        return len(journeys)

    def drop(self, partition: int) -> None:
        self.partitions.pop(partition, None)
        self.unreadable.pop(partition, None)

    def fold(self, partition: int, records: Iterable[tuple[bytes, Any]]) -> FoldResult:
        """Fold ``(value, headers)`` records of ``touchpoints.events`` into the partition's
        journeys; returns the journeys touched (changed or redelivered)."""
        journeys = self.partitions.setdefault(partition, {})
        result = FoldResult()
        touched = result.touched
        decode = record_decoder(self.registry)
        for value, headers in records:
            try:
                logged = decode(value, headers)
            except (MalformedRecord, InvalidEvent) as error:
                result.undecodable.append(str(error))
                continue
            key = logged.stream
            journey = journeys.get(key)
            if journey is None:
                journey = journeys[key] = IdentityJourney(key)
            if journey.apply(logged):
                result.applied += 1
            else:
                result.duplicates += 1
            touched[key] = journey
        return result

    def journeys(self, partition: int) -> dict[str, IdentityJourney]:
        return self.partitions.get(partition, {})

    def identity_count(self) -> int:
        return sum(len(journeys) for journeys in self.partitions.values())
