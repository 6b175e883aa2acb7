"""Planning one SQLite append: everything between "events in" and "rows out" that
needs no database. Split from ``events.sqlite.store`` so the hot path reads on its own.

A ``PreparedBatch`` is computed before the write lock is taken (checks, ids,
times, repeated ids within the call); ``plan`` runs inside the write transaction
with what only the database knows (stored duplicates, stream heads, the log head
and chain head): it checks expected versions and returns the rows to insert, each
with its hash-chain entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from events.hashing import chain
from events.times import to_micros, utc_text
from events.sqlite.ids import keys_of
from events.store import (
    AppendOutcome,
    AppendResult,
    DuplicateEventInBatch,
    ExpectedVersion,
    NewEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)

def id_key(event_id_bytes: bytes) -> int:
    """The indexed 8-byte prefix of an event id, as a signed 64-bit integer."""
    return int.from_bytes(event_id_bytes[:8], "big", signed=True)


def canonical(stream: str, event: NewEvent, occurred_text: str, recorded_text: str) -> bytes:
    """``events.hashing.canonical_bytes`` with both times already formatted by
    ``utc_text`` (the recorded time is shared by a whole batch). Must stay
    byte-identical to it: ``tests/events/test_hashing.py`` checks."""
    return orjson.dumps(
        [
            stream,
            str(event.event_id),
            event.type,
            event.schema_version,
            occurred_text,
            recorded_text,
            event.data.decode(),
            event.metadata.decode(),
        ]
    )


NO_VERSION = -1  # the current version of a stream without events


@dataclass(slots=True)
class StreamHeads:
    """Streams' ids and current versions (``NO_VERSION``: no event yet), as two flat dicts
    of ints rather than a list per stream: long-lived small lists make the garbage
    collector's full passes frequent (measured: 3 us per stream and append with a large
    heap). Plans update ``versions`` in place."""

    ids: dict[str, int]
    versions: dict[str, int]


@dataclass(slots=True)
class Plan:
    rows: list[tuple]  # events rows, in position order
    results: list[AppendResult]
    head: int  # the log head after the commit
    chain_head: bytes

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def written(self) -> tuple[list[bytes], list[int]]:
        """The new rows' event ids and positions (for the id index)."""
        return [row[3] for row in self.rows], [row[0] for row in self.rows]


class PreparedBatch:
    """One ``append_batch`` call, checked and pre-computed (no database needed)."""

    def __init__(self, appends: Sequence[StreamAppend], recorded_at: datetime):
        self.appends = [_checked(append) for append in appends]
        events: list[NewEvent] = []
        streams: list[str] = []
        bounds: list[tuple[int, int]] = []  # each append's slice of ``events``
        for append in self.appends:
            start = len(events)
            events.extend(append.events)
            streams.extend([append.stream] * (len(events) - start))
            bounds.append((start, len(events)))
        self.events, self.streams, self.bounds = events, streams, bounds
        self.ids = [event.event_id.bytes for event in events]
        self.occurred = [to_micros(event.occurred_at) for event in events]
        self._occurred_text = [utc_text(event.occurred_at) for event in events]
        self.repeat_of = _repeats(events, streams, self.ids)
        self.stamp(recorded_at)

    def __len__(self) -> int:
        return len(self.events)

    def stamp(self, recorded_at: datetime) -> None:
        """Set the batch's recorded_at (one value for every event of the call)."""
        self.recorded = to_micros(recorded_at)
        self._recorded_text = utc_text(recorded_at)

    def canonical(self, i: int) -> bytes:
        """Event ``i``'s canonical bytes (``events.hashing.canonical_bytes``)."""
        return canonical(self.streams[i], self.events[i], self._occurred_text[i], self._recorded_text)

    def new_event_streams(self, stored: dict[bytes, tuple[int, int]]) -> set[str]:
        """The streams that receive at least one event not already stored."""
        repeat_of, streams = self.repeat_of, self.streams
        if not stored and not repeat_of:
            return set(streams)
        return {streams[i] for i, event_id in enumerate(self.ids) if event_id not in stored and i not in repeat_of}

    def plan(
        self,
        stored: dict[bytes, tuple[int, int]],
        streams: StreamHeads,
        head: int,
        chain_head: bytes,
    ) -> Plan:
        """Check expected versions (raising ``WrongExpectedVersion``) and assign positions,
        versions and hashes. ``stored``: event id -> (position, version) already in the log;
        ``streams``: holds every stream receiving an event (its versions are updated in place)."""
        rows: list[tuple] = []
        add_row = rows.append
        results: list[AppendResult] = []
        outcomes: list[AppendOutcome] = []
        add_outcome = outcomes.append
        events, ids, repeat_of, occurred = self.events, self.ids, self.repeat_of, self.occurred
        occurred_text, recorded, recorded_text = self._occurred_text, self.recorded, self._recorded_text
        keys = keys_of(ids).tolist()
        any_version = StreamState.ANY
        stream_ids, versions = streams.ids, streams.versions
        for append, (start, end) in zip(self.appends, self.bounds):
            name = append.stream
            stream_id = None
            for i in range(start, end):
                event = events[i]
                event_id = ids[i]
                if i in repeat_of:
                    original = outcomes[repeat_of[i]]
                    add_outcome(AppendOutcome(event.event_id, original.position, original.stream_version, True))
                elif event_id in stored:
                    position, version = stored[event_id]
                    add_outcome(AppendOutcome(event.event_id, position, version, True))
                else:
                    if stream_id is None:
                        stream_id = stream_ids[name]
                        if append.expected_version is not any_version:
                            current = versions[name]
                            check_expected(name, append.expected_version, None if current < 0 else current)
                    head += 1
                    version = versions[name] + 1
                    versions[name] = version
                    # Hashed at once, not kept: holding many orjson outputs costs more than making them.
                    chain_head = chain(chain_head, canonical(name, event, occurred_text[i], recorded_text))
                    add_row(
                        (
                            head, stream_id, version, event_id, keys[i], event.type, event.schema_version,
                            occurred[i], recorded, event.data, event.metadata, chain_head,
                        )
                    )  # fmt: skip
                    add_outcome(AppendOutcome(event.event_id, head, version, False))
            results.append(AppendResult(name, outcomes[start:end]))
        return Plan(rows, results, head, chain_head)


def check_expected(stream: str, expected: ExpectedVersion, current: int | None) -> None:
    if expected is StreamState.ANY:
        return
    if expected is StreamState.NO_STREAM:
        ok = current is None
    elif expected is StreamState.EXISTS:
        ok = current is not None
    else:
        ok = current == expected
    if not ok:
        raise WrongExpectedVersion(stream, expected, current)


def _checked(append: StreamAppend) -> StreamAppend:
    if not isinstance(append.stream, str) or not append.stream:
        raise ValueError(f"stream name must be a non-empty string, got {append.stream!r}")
    expected = append.expected_version
    if isinstance(expected, bool) or not isinstance(expected, (int, StreamState)):
        raise TypeError(f"expected_version must be an int or a StreamState, got {expected!r}")
    if isinstance(expected, int) and expected < 0:
        raise ValueError(f"expected_version must be >= 0 (versions start at 0), got {expected}")
    for event in append.events:
        if not isinstance(event, NewEvent):
            raise TypeError(f"stream {append.stream!r}: expected NewEvent, got {type(event).__name__}")
    return append


def _repeats(events: list[NewEvent], streams: list[str], ids: list[bytes]) -> dict[int, int]:
    """index -> index of the first copy, for an event_id repeated within one call. Equal
    copies are one event; copies that differ raise ``DuplicateEventInBatch``."""
    first: dict[bytes, int] = {}
    repeat_of: dict[int, int] = {}
    for i, event_id in enumerate(ids):
        seen = first.setdefault(event_id, i)
        if seen == i:
            continue
        if streams[seen] != streams[i] or events[seen] != events[i]:
            raise DuplicateEventInBatch(
                f"event {events[i].event_id} appears twice in one append with different content"
                f" (streams {streams[seen]!r} and {streams[i]!r})"
            )
        repeat_of[i] = seen
    return repeat_of
