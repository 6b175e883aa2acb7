"""The event-store port: what every adapter (SQLite, KurrentDB) promises.

Streams are one per identity (``customer-<id>``, ``anonymous-<id>``). Stream
versions start at 0 (as in EventStoreDB). Global positions are ordered integers
but NOT dense: never compute "the next position" by adding one and expecting an
event there; only compare them. Stored events are envelopes of bytes, not
pydantic objects: decoding goes through ``events.registry``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID


class StreamState(enum.Enum):
    """Expected-version conditions other than an exact version number."""

    ANY = "any"  # no check
    NO_STREAM = "no_stream"  # the stream must not exist yet
    EXISTS = "exists"  # the stream must exist


ExpectedVersion = int | StreamState


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``data`` is the canonical JSON body (see
    ``events.registry.encode_body``); ``metadata`` is JSON reserved for the
    platform (encryption key ids for erasable fields, tracing), ``b"{}"`` if unused."""

    event_id: UUID
    type: str
    schema_version: int
    occurred_at: datetime
    data: bytes
    metadata: bytes = b"{}"


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the log holds it."""

    position: int  # global commit position: ordered, not dense
    stream: str
    stream_version: int  # 0-based
    event_id: UUID
    type: str
    schema_version: int
    occurred_at: datetime  # when it happened (emitter's clock)
    recorded_at: datetime  # when the log learned it (store's clock)
    data: bytes
    metadata: bytes
    hash: bytes | None = None  # hash-chain entry (audit); None where an adapter keeps none


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """Where one appended event lives; ``duplicate`` if its ``event_id`` was already stored
    (then position and version are the original's, and nothing was written)."""

    event_id: UUID
    position: int
    stream_version: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's part of a batch append."""

    stream: str
    events: Sequence[NewEvent]
    expected_version: ExpectedVersion = StreamState.ANY


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream: str
    outcomes: list[AppendOutcome] = field(default_factory=list)

    @property
    def current_version(self) -> int | None:
        return max((o.stream_version for o in self.outcomes), default=None)


class EventStoreError(Exception):
    """Base of every error the port raises; adapters translate their client's errors."""


class WrongExpectedVersion(EventStoreError):
    """The stream was not at the expected version: nothing was written."""

    def __init__(self, stream: str, expected: ExpectedVersion, actual: int | None):
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = expected.value if isinstance(expected, StreamState) else expected
        current = "no stream" if actual is None else f"version {actual}"
        super().__init__(f"stream {stream!r}: expected {shown}, found {current}")


class DuplicateEventInBatch(EventStoreError):
    """The same ``event_id`` appears twice in one append with different content."""


class StoreUnavailable(EventStoreError):
    """The store cannot be reached or opened."""


class DuplicatesFound(EventStoreError):
    """An append told to refuse duplicates met some (``events.encoded.append_encoded`` with
    ``refuse_duplicates``): nothing was written. ``stored``: index in the batch -> position of
    the stored event with that id; ``repeated``: index -> index of its first copy in the batch."""

    def __init__(self, stored: dict[int, int], repeated: dict[int, int]):
        self.stored = stored
        self.repeated = repeated
        super().__init__(f"{len(stored)} event ids already stored, {len(repeated)} repeated in the batch")


class StoreFull(StoreUnavailable):
    """The store has no room for the write (its disk, a quota or a size limit is full):
    nothing of the append was written. Appends work again once room is made."""


@runtime_checkable
class EventStore(Protocol):
    """The port. Every adapter passes ``tests/events/contract.py``."""

    def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion
    ) -> AppendResult:
        """Append atomically. Events whose ``event_id`` is already stored are not
        written again and report their original position (retries are safe). If
        new events remain and the stream is not at ``expected_version``, raise
        ``WrongExpectedVersion`` and write nothing."""
        ...

    def append_batch(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams. All-or-nothing where the backend can do it
        (SQLite: one transaction); otherwise stream by stream, each atomic and
        idempotent, so a retry of the whole batch completes it."""
        ...

    def read_stream(
        self, stream: str, from_version: int = 0, *, limit: int | None = None
    ) -> Iterator[RecordedEvent]:
        """One stream in version order, from ``from_version`` (inclusive)."""
        ...

    def read_all(
        self, from_position: int = 0, *, limit: int | None = None
    ) -> Iterator[RecordedEvent]:
        """The whole log in global order, events with ``position >= from_position``."""
        ...

    def subscribe(
        self, from_position: int = 0, *, poll_interval: float = 0.05
    ) -> "Subscription":
        """A catch-up subscription: history from ``from_position`` (inclusive), then
        every new append as it commits, in global order."""
        ...

    def head_position(self) -> int | None:
        """The position of the newest event, or None for an empty log."""
        ...

    def stream_version(self, stream: str) -> int | None:
        """The stream's current version, or None if it does not exist."""
        ...

    def count(self) -> int:
        """How many events the log holds (positions need not be dense, so not the head)."""
        ...

    def close(self) -> None: ...


class Subscription(Protocol):
    """An iterator of recorded events that blocks for new ones; ``stop()`` ends it
    from another thread, after which iteration finishes."""

    def __iter__(self) -> Iterator[RecordedEvent]: ...

    def stop(self) -> None: ...
