"""Planning one SQLite append: everything between "events in" and "rows out" that
needs no database. Split from ``events.sqlite`` so the hot path reads on its own.

A ``PreparedBatch`` is computed before the write lock is taken (ids, index keys,
times, canonical bytes, repeated ids within the call); ``plan`` runs inside the
write transaction with what only the database knows (stored duplicates, stream
heads, the log head and chain head) and returns the rows to insert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson

from events.hashing import chain, utc_text
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

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch (UTC) of an aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: the store needs timezone-aware times")
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


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


@dataclass(slots=True)
class Plan:
    rows: list[tuple]  # events rows, in position order
    results: list[AppendResult]
    head: int  # the log head after the commit
    chain_head: bytes
    versions: dict[str, list]  # stream -> [stream id, version after the commit]


class PreparedBatch:
    """One ``append_batch`` call, checked and pre-computed (no database needed)."""

    def __init__(self, appends: Sequence[StreamAppend], recorded_at: datetime):
        self.appends = [_checked(append) for append in appends]
        self.events: list[NewEvent] = []
        self.streams: list[str] = []
        self.bounds: list[tuple[int, int]] = []  # each append's slice of ``events``
        for append in self.appends:
            start = len(self.events)
            self.events.extend(append.events)
            self.streams.extend([append.stream] * len(append.events))
            self.bounds.append((start, len(self.events)))
        self.ids = [event.event_id.bytes for event in self.events]
        self.occurred = [to_micros(event.occurred_at) for event in self.events]
        self.occurred_text = [utc_text(event.occurred_at) for event in self.events]
        self.repeat_of = _repeats(self.events, self.streams, self.ids)
        self.canonical: list[bytes] = []
        self.stamp(recorded_at)

    def stamp(self, recorded_at: datetime) -> None:
        """Set the batch's recorded_at (and so the canonical bytes of every event)."""
        self.recorded = to_micros(recorded_at)
        text = utc_text(recorded_at)
        self.canonical = [
            canonical(stream, event, occurred, text)
            for stream, event, occurred in zip(self.streams, self.events, self.occurred_text)
        ]

    def keys(self) -> list[int]:
        return list({id_key(event_id) for event_id in self.ids})

    def streams_with_new_events(self, stored: dict[bytes, tuple[int, int]]) -> set[str]:
        ids, repeat_of = self.ids, self.repeat_of
        return {
            append.stream
            for append, (start, end) in zip(self.appends, self.bounds)
            if any(i not in repeat_of and ids[i] not in stored for i in range(start, end))
        }

    def plan(
        self,
        stored: dict[bytes, tuple[int, int]],
        streams: dict[str, list],
        head: int,
        chain_head: bytes,
    ) -> Plan:
        """Check expected versions (raising ``WrongExpectedVersion``) and assign positions,
        versions and hashes. ``stored``: event id -> (position, version) already in the log;
        ``streams``: stream -> [stream id, current version or None] (updated in place)."""
        rows: list[tuple] = []
        results: list[AppendResult] = []
        outcomes: list[AppendOutcome | None] = [None] * len(self.events)
        events, ids, repeat_of, occurred, canonicals = (
            self.events, self.ids, self.repeat_of, self.occurred, self.canonical
        )
        recorded = self.recorded
        for append, (start, end) in zip(self.appends, self.bounds):
            state = None
            for i in range(start, end):
                event = events[i]
                first = repeat_of.get(i)
                if first is not None:
                    original = outcomes[first]
                    outcomes[i] = AppendOutcome(event.event_id, original.position, original.stream_version, True)
                elif ids[i] in stored:
                    position, version = stored[ids[i]]
                    outcomes[i] = AppendOutcome(event.event_id, position, version, True)
                else:
                    if state is None:
                        state = streams[append.stream]
                        check_expected(append.stream, append.expected_version, state[1])
                    head += 1
                    version = 0 if state[1] is None else state[1] + 1
                    state[1] = version
                    chain_head = chain(chain_head, canonicals[i])
                    event_id = ids[i]
                    rows.append(
                        (
                            head, state[0], version, event_id, id_key(event_id), event.type,
                            event.schema_version, occurred[i], recorded, event.data, event.metadata,
                            chain_head,
                        )
                    )  # fmt: skip
                    outcomes[i] = AppendOutcome(event.event_id, head, version, False)
            results.append(AppendResult(append.stream, outcomes[start:end]))
        return Plan(rows, results, head, chain_head, streams)


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
