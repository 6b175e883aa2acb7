"""The journey processor's state: one journey per identity stream of each partition it owns.

Pure apart from decoding: no Kafka here, so tests and the benches fold records directly;
``streams.processors`` feeds it batches, restores it from the journeys changelog and
publishes what a batch touched.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from application.journey_spill import SpilledJourneys, saved_journeys
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


Journeys = MutableMapping[str, IdentityJourney]


class JourneyState:
    """The journeys of the partitions this worker owns: ``partition -> {key: journey}``.

    In memory unless given ``journeys_folder`` (the worker gives ``<data>/worker/`` unless
    ``TOUCHPOINTS_WORKER_JOURNEYS_ON_DISK=0``): then each partition's
    journeys live in a file of their own there (``application.journey_spill.SpilledJourneys``:
    the most recently used stay decoded, the rest are read back when their identity has
    events again), so the worker's memory no longer grows with the population. Pure apart
    from decoding and that file: no Kafka here, so tests and the bench fold records directly."""

    def __init__(self, registry: EventRegistry = REGISTRY, journeys_folder: Path | None = None):
        self.registry = registry
        self.journeys_folder = journeys_folder
        self.partitions: dict[int, Journeys] = {}
        self.unreadable: dict[int, int] = {}  # partition -> journeys its restore left out

    def _empty(self) -> Journeys:
        if self.journeys_folder is None:
            return {}
        return SpilledJourneys(self.journeys_folder, keeps_identity=False)

    def _partition(self, partition: int) -> Journeys:
        journeys = self.partitions.get(partition)
        if journeys is None:
            journeys = self.partitions[partition] = self._empty()
        return journeys

    def owns(self, partition: int) -> bool:
        return partition in self.partitions

    def restore(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None]], *,
                base: Path | None = None) -> int:
        """Rebuild a partition from its journeys changelog (oldest first; the last record
        of a key wins, ``None`` deletes); returns how many journeys it holds. Unreadable
        journeys (another format version, or damaged) are left out and counted in
        ``unreadable``: only their events can rebuild them. ``base``: a file of the
        partition's journeys (``SpilledJourneys.save_copy``, handed over by
        ``streams.worker_state``) the changelog holds only the changes over: it is copied,
        never taken, and the changelog's records replace its journeys."""
        return self.install(partition, self.restored(partition, records, base=base))

    def install(self, partition: int, restored: tuple[Journeys, int]) -> int:
        """Hold ``restored`` (from ``restored``) as the partition's journeys; how many."""
        journeys, unreadable = restored
        self.drop(partition)
        self.partitions[partition] = journeys
        self.unreadable[partition] = unreadable
        return len(journeys)

    def restored(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None]], *,
                 base: Path | None = None) -> tuple[Journeys, int]:
        """``restore``'s work, without touching what this state holds (so it may run in
        another thread): the journeys and how many were left out unreadable."""
        latest: dict[str, bytes | None] = {}  # key -> its last record's value
        for key, value in records:
            if key is not None:
                name = key.decode()
                latest.pop(name, None)  # keeps the dict in order of each key's last record
                latest[name] = value
        journeys = self._empty() if base is None else self._copy_of(base)
        spilled = journeys if isinstance(journeys, SpilledJourneys) else None
        readable: list[tuple[str, bytes]] = []
        unreadable: dict[str, JourneyFormatError] = {}
        for name, value in latest.items():
            if value is None:
                continue
            try:
                journey = IdentityJourney.from_bytes(value)
            except JourneyFormatError as error:
                unreadable[name] = error
                continue
            if spilled is None:
                journeys[name] = journey
            else:  # checked readable above; stored as read, with no decoded copy kept
                readable.append((name, value))
        if spilled is not None:
            spilled.put_encoded(readable)
        if unreadable:
            name, error = next(iter(unreadable.items()))
            log.warning("%d journeys on partition %d unreadable (e.g. %s: %s): left out",
                        len(unreadable), partition, name, error)
        return journeys, len(unreadable)

    def _copy_of(self, base: Path) -> Journeys:
        """A partition's journeys starting as the copy of ``base``, which stays as it is
        (a later restore may need it again)."""
        if self.journeys_folder is None:
            return dict(saved_journeys(base))
        self.journeys_folder.mkdir(parents=True, exist_ok=True)
        copy = self.journeys_folder / f"base-copy-{os.getpid()}-{base.name}"
        shutil.copyfile(base, copy)  # the kernel copies (copy_file_range / sendfile): ~1 GB/s, no Python per row
        return SpilledJourneys(self.journeys_folder, keeps_identity=False, adopt=copy)

    def encoded(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        """Every journey of ``partition`` as ``(key, IdentityJourney.to_bytes())``."""
        journeys = self.journeys(partition)
        if isinstance(journeys, SpilledJourneys):
            return journeys.encoded_items()
        return ((key.encode(), journey.to_bytes()) for key, journey in list(journeys.items()))

    def drop(self, partition: int) -> None:
        journeys = self.partitions.pop(partition, None)
        if isinstance(journeys, SpilledJourneys):
            journeys.close()
        self.unreadable.pop(partition, None)

    def close(self) -> None:
        """Drop every partition (their files go with them)."""
        for partition in list(self.partitions):
            self.drop(partition)

    def fold(self, partition: int, records: Iterable[tuple[bytes, Any]]) -> FoldResult:
        """Fold ``(value, headers)`` records of ``touchpoints.events`` into the partition's
        journeys; returns the journeys touched (changed or redelivered)."""
        journeys = self._partition(partition)
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
                journeys[key] = journey  # changed in place: a file-backed mapping writes it when it lets it go
            else:
                result.duplicates += 1
            touched[key] = journey
        return result

    def journeys(self, partition: int) -> Journeys:
        return self.partitions.get(partition, {})

    def identity_count(self) -> int:
        return sum(len(journeys) for journeys in self.partitions.values())
