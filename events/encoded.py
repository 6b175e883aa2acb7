"""Events validated and encoded once, column by column: the bulk append path.

Ingestion (HTTP batches, ``touchpoints ingest``, the Kafka inbound agent) appends
validated events with ``StreamState.ANY``. Building a ``NewEvent`` per event and
re-deriving its id bytes, times and canonical bytes inside the writer costs more
than the SQLite insert itself, so ingestion encodes each event once, into plain
columns (cheap to pickle between processes), and a store that offers
``append_encoded`` writes them directly. ``append_encoded`` below falls back to
``append_batch`` for stores that do not.

Semantics (every store, both paths): events go to their streams in input order;
an ``event_id`` already stored, or seen earlier in the same batch, is a duplicate
that reports the original's position and version and writes nothing (its content
is not compared: the id is the emitter's idempotency key).

Order, the one rule of ingestion: the log's positions follow the input order. The
exception is a store without ``append_encoded`` (KurrentDB), which appends stream by
stream: its streams follow one another in order of first appearance in the batch
(one append per stream, rather than one per run of a stream in the input).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from uuid import UUID

import orjson

from events.times import from_micros, micros_and_utc_text
from events.models import Event
from events.store import AppendOutcome, EventStore, NewEvent, StreamAppend, StreamState

NO_METADATA = b"{}"


@dataclass(slots=True)
class EncodedBatch:
    """Columns of one batch, index ``i`` for event ``i`` in input order.

    ``canonical_head[i] + orjson.dumps(recorded_text) + canonical_tail[i]`` is the
    event's ``events.hashing.canonical_bytes`` once the store has chosen its
    ``recorded_at``: everything but that time is serialized here, by the encoder."""

    streams: list[str] = field(default_factory=list)
    ids: list[bytes] = field(default_factory=list)  # event_id.bytes (16)
    types: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)  # schema versions
    occurred: list[int] = field(default_factory=list)  # occurred_at, microseconds since the epoch (UTC)
    data: list[bytes] = field(default_factory=list)  # canonical bodies (``encode_body``)
    canonical_head: list[bytes] = field(default_factory=list)
    canonical_tail: list[bytes] = field(default_factory=list)
    metadata: bytes = NO_METADATA  # one value for the whole batch

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, event: Event) -> None:
        """Encode one validated event onto the end of the batch."""
        self.extend((event,))

    def extend(self, events: Iterable[Event]) -> None:
        """Encode validated events onto the end of the batch (the hot loop of ingestion),
        ``ENCODE_SLICE`` at a time: one pass per column over a slice that stays in the
        core's cache (over a 1,000-event request each pass went back to memory: the HTTP
        decoding workers spent ~10% more CPU)."""
        events = events if isinstance(events, list) else list(events)
        for start in range(0, len(events), ENCODE_SLICE):
            self._extend(events[start : start + ENCODE_SLICE])

    def _extend(self, events: list[Event]) -> None:
        dumps = orjson.dumps
        streams = [event.stream for event in events]
        event_ids = [event.event_id for event in events]
        types = [event.TYPE for event in events]
        versions = [event.SCHEMA_VERSION for event in events]
        times = [micros_and_utc_text(event.occurred_at) for event in events]
        bodies = [event.__pydantic_serializer__.to_json(event, exclude=_ENVELOPE_TYPE, exclude_none=True)
                  for event in events]  # fmt: skip
        self.streams += streams
        self.ids += [event_id.bytes for event_id in event_ids]
        self.types += types
        self.versions += versions
        self.occurred += [micros for micros, _ in times]
        self.data += bodies
        # orjson writes arrays compactly ("[a,b]"), so the canonical list splits at its commas.
        self.canonical_head += [
            dumps([stream, event_id, type_, version, text])[:-1] + b","  # UUIDs as str()
            for stream, event_id, type_, version, (_, text) in zip(streams, event_ids, types, versions, times)
        ]
        metadata_tail = b"," + dumps(self.metadata.decode()) + b"]"
        self.canonical_tail += [b"," + dumps(body.decode()) + metadata_tail for body in bodies]

    def new_events(self) -> list[tuple[str, NewEvent]]:
        """The batch as ``(stream, NewEvent)`` pairs, for stores without ``append_encoded``."""
        return [
            (stream, NewEvent(UUID(bytes=event_id), type_, version, from_micros(occurred), data, self.metadata))
            for stream, event_id, type_, version, occurred, data in zip(
                self.streams, self.ids, self.types, self.versions, self.occurred, self.data
            )
        ]


def encode_events(events: Iterable[Event]) -> EncodedBatch:
    batch = EncodedBatch()
    batch.extend(events)
    return batch


@dataclass(slots=True)
class EncodedOutcomes:
    """Per input event, in input order: global position, stream version, duplicate flag."""

    positions: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    duplicates: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def duplicate_count(self) -> int:
        return sum(self.duplicates)


@runtime_checkable
class EncodedAppender(Protocol):
    """A store with a native bulk path (the SQLite adapter). ``refuse_duplicates``: raise
    ``events.store.DuplicatesFound`` and write nothing if any id is stored or repeated."""

    def append_encoded(self, batch: EncodedBatch, *, refuse_duplicates: bool = False) -> EncodedOutcomes: ...


def append_encoded(store: EventStore, batch: EncodedBatch, *, refuse_duplicates: bool = False) -> EncodedOutcomes:
    """Append ``batch`` (semantics and order in the module docstring): the store's own
    ``append_encoded``, else one ``append_batch`` call. Every ingestion appends here.
    ``refuse_duplicates`` (stores with their own ``append_encoded`` only; others append and
    report duplicates as usual): ``DuplicatesFound`` and nothing written when the batch holds
    an id already stored or repeated, so a caller can compare contents before anything is
    stored (``application.ingest``), at no cost to a batch without duplicates."""
    if isinstance(store, EncodedAppender):
        if refuse_duplicates:
            return store.append_encoded(batch, refuse_duplicates=True)
        return store.append_encoded(batch)
    return _append_through_port(store, batch)


def _append_through_port(store: EventStore, batch: EncodedBatch) -> EncodedOutcomes:
    # One StreamAppend per stream, in order of first appearance: such a store pays a round
    # trip per append, and a run of one stream is often a single event in the input.
    by_stream: dict[str, list[NewEvent]] = {}
    first_index: dict[bytes, int] = {}
    slots: list[tuple[str, int] | int] = []  # (stream, index in its append) or the index of the first copy
    for index, (stream, new) in enumerate(batch.new_events()):
        event_id = batch.ids[index]
        seen = first_index.get(event_id)
        if seen is not None:
            slots.append(seen)
            continue
        first_index[event_id] = index
        pending = by_stream.setdefault(stream, [])
        slots.append((stream, len(pending)))
        pending.append(new)
    outcomes = EncodedOutcomes()
    if not by_stream:
        return outcomes
    results = store.append_batch([StreamAppend(s, events, StreamState.ANY) for s, events in by_stream.items()])
    by_name: dict[str, list[AppendOutcome]] = {result.stream: result.outcomes for result in results}
    for slot in slots:
        if isinstance(slot, int):  # a repeat within the batch: the first copy's outcome
            outcomes.positions.append(outcomes.positions[slot])
            outcomes.versions.append(outcomes.versions[slot])
            outcomes.duplicates.append(True)
            continue
        outcome = by_name[slot[0]][slot[1]]
        outcomes.positions.append(outcome.position)
        outcomes.versions.append(outcome.stream_version)
        outcomes.duplicates.append(outcome.duplicate)
    return outcomes


ENCODE_SLICE = 256  # events encoded per pass (also how many lines a bulk-load decoder validates at once)
_ENVELOPE_TYPE = {"type"}  # kept in the envelope, not the body (as ``events.registry.encode_body``)
