"""KurrentDB (EventStoreDB) adapter of the event-store port, on ``kurrentdbclient``.

Select it with ``TOUCHPOINTS_STORE=esdb://host:2113?Tls=false`` (or ``esdb+discover``,
``kurrentdb``, ``kurrentdb+discover``; see
``events.kurrentdb.mapping.parse_url`` and ``docs/PRODUCTION.md``).

How the port's promises are kept on KurrentDB:

- Streams: one KurrentDB stream per identity stream (``<namespace>:`` in front when
  the URL names a namespace). Versions are KurrentDB stream positions (from 0);
  positions are commit positions (ordered, far from dense).
- Expected version: checked against the stream state we read, and sent to the
  server as the exact version we saw, so a concurrent writer makes the server refuse
  (``WrongCurrentVersionError``); we re-read and either report the conflict
  (``WrongExpectedVersion``) or, for ANY/EXISTS, try again.
- Idempotency by ``event_id``, with no time window: before writing, the ids already
  in the stream are known (read once per stream, then cached with the stream's
  version and refreshed by reading only what is new); stored ids are reported as
  duplicates with their original position and version. Within its own window the
  server also drops a retried append whose ids it just wrote. Ids are checked per
  stream: the same id sent to a different stream is not detected (an event's
  stream is derived from its identity, so a retry goes to the same stream).
- ``append_batch``: stream by stream, each append atomic and idempotent; a retry of
  the whole batch completes it. (KurrentDB 25.1 adds a multi-stream append; it is
  not used yet: it reports one position for the whole batch, not per event.)
- ``recorded_at``: the server's commit timestamp (the log's own clock, non-decreasing
  in commit order, like the SQLite store's); our send time is kept in the metadata.
- Hash chain: computed over ``$all`` order when reading, anchored by seals (see
  ``events.kurrentdb.chain``); ``read_stream`` returns ``hash=None``.
- Subscriptions: history page by page, then a server push subscription from the last
  position read (KurrentDB's is exclusive, the port's ``from_position`` inclusive);
  re-subscribed after transient drops; ``poll_interval`` is unused.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar
from uuid import UUID

import kurrentdbclient
from kurrentdbclient import KurrentDBClient
from kurrentdbclient import exceptions as kx

from events.kurrentdb.chain import Seal, SealReport, check_seals
from events.kurrentdb.mapping import (
    DEFAULT_SEAL_EVERY,
    DEFAULT_TIMEOUT,
    InvalidStoreURL,
    client_expected_version,
    decode_metadata,
    mask_password,
    parse_url,
    read_filter,
    satisfies,
    seal_stream_name,
    stored_stream_name,
    to_client_event,
    to_port_event,
    translate_error,
)
from events.kurrentdb.reading import Anchors, ChainReader, KurrentDBSubscription, PositionGone
from events.store import (
    AppendOutcome,
    AppendResult,
    DuplicateEventInBatch,
    EventStoreError,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StoreUnavailable,
    StreamAppend,
    WrongExpectedVersion,
)

T = TypeVar("T")

PAGE_SIZE = 1000
STREAM_CACHE_SIZE = 10_000  # streams whose version and ids are kept between appends
MAX_APPEND_ATTEMPTS = 8
PROBE_TIMEOUT = 10.0


@dataclass
class _StreamState:
    version: int | None = None
    ids: dict[UUID, tuple[int, int]] = field(default_factory=dict)  # event id -> (version, position)


@dataclass(frozen=True, slots=True)
class _Prepared:
    stream: str
    stored: str
    events: list[NewEvent]  # as given, for one outcome per event
    unique: list[NewEvent]  # first of each event id, in order
    expected: ExpectedVersion


class KurrentDBEventStore:
    """The port on a KurrentDB database or cluster. Thread-safe."""

    def __init__(
        self,
        client: KurrentDBClient,
        *,
        namespace: str | None = None,
        seal_every: int = DEFAULT_SEAL_EVERY,
        timeout: float = DEFAULT_TIMEOUT,
        page_size: int = PAGE_SIZE,
    ):
        self._client = client
        self._namespace = namespace
        self._timeout = timeout
        self._page_size = page_size
        self._filter = read_filter(namespace)
        self._seal_stream = seal_stream_name(namespace)
        self._closed = False
        self._streams: OrderedDict[str, _StreamState] = OrderedDict()
        self._streams_lock = threading.Lock()
        self._append_locks = [threading.Lock() for _ in range(64)]
        self._anchors = Anchors(self, seal_every)
        self._subscriptions: weakref.WeakSet[KurrentDBSubscription] = weakref.WeakSet()

    @classmethod
    def open(cls, url: str, *, root_certificates: str | bytes | None = None) -> "KurrentDBEventStore":
        """Connect to the database a store URL names and check it answers; raises
        ``InvalidStoreURL`` (bad URL or certificate file) or ``StoreUnavailable``."""
        config = parse_url(url)
        try:
            client = KurrentDBClient(uri=config.client_uri, root_certificates=root_certificates)
        except OSError as error:
            raise InvalidStoreURL(f"{config.display_uri}: cannot read a certificate or key file: {error}") from None
        except ValueError as error:
            raise InvalidStoreURL(f"{config.display_uri}: {error}") from None
        except (kx.KurrentDBClientError, kx.ProgrammingError) as error:
            raise StoreUnavailable(f"cannot reach KurrentDB at {config.display_uri}: {error}") from error
        store = cls(client, namespace=config.namespace, seal_every=config.seal_every, timeout=config.timeout)
        try:
            with store._translated(f"connecting to {mask_password(url)}"):
                client.get_commit_position(timeout=min(PROBE_TIMEOUT, config.timeout))
        except EventStoreError:
            store.close()
            raise
        return store

    @property
    def namespace(self) -> str | None:
        return self._namespace

    # --- appends ---------------------------------------------------------------------

    def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion
    ) -> AppendResult:
        return self._append_prepared(self._prepare(stream, events, expected_version))

    def append_batch(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Stream by stream, in order. Everything is validated before the first write;
        if one stream then fails, the streams before it are written: retry the batch."""
        prepared = [self._prepare(a.stream, a.events, a.expected_version) for a in appends]
        _refuse_ids_in_two_streams(prepared)
        return [self._append_prepared(part) for part in prepared]

    def _prepare(self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> _Prepared:
        client_expected_version(expected)
        if not isinstance(stream, str):
            raise TypeError(f"stream name must be a string, got {stream!r}")
        stored = stored_stream_name(self._namespace, stream)
        given = list(events)
        for event in given:
            if not isinstance(event, NewEvent):
                raise TypeError(f"stream {stream!r}: expected NewEvent, got {type(event).__name__}")
        unique: dict[UUID, NewEvent] = {}
        for event in given:
            first = unique.setdefault(event.event_id, event)
            if first is not event and first != event:
                raise DuplicateEventInBatch(
                    f"stream {stream!r}: event {event.event_id} appears twice with different content"
                )
        checked = datetime.now(timezone.utc)
        for event in unique.values():
            to_client_event(event, checked)  # refuses what cannot be stored, before any write
        return _Prepared(stream, stored, given, list(unique.values()), expected)

    def _append_prepared(self, part: _Prepared) -> AppendResult:
        if not part.unique:
            return AppendResult(part.stream)
        lock = self._append_locks[hash(part.stored) % len(self._append_locks)]
        with self._translated("append", stream=part.stream, expected=part.expected), lock:
            placed, written = self._append_locked(part)
        outcomes = []
        reported: set[UUID] = set()
        for event in part.events:
            version, position = placed[event.event_id]
            duplicate = event.event_id not in written or event.event_id in reported
            reported.add(event.event_id)
            outcomes.append(AppendOutcome(event.event_id, position, version, duplicate))
        return AppendResult(part.stream, outcomes)

    def _append_locked(self, part: _Prepared) -> tuple[dict[UUID, tuple[int, int]], set[UUID]]:
        state = self._cached_stream(part.stored)
        fresh = state is None
        if state is None:
            state = self._refresh_stream(part.stored, _StreamState())
        for _ in range(MAX_APPEND_ATTEMPTS):
            new = [e for e in part.unique if e.event_id not in state.ids]
            if not new:
                self._remember_stream(part.stored, state)
                return {e.event_id: state.ids[e.event_id] for e in part.unique}, set()
            if not satisfies(part.expected, state.version):
                if not fresh:
                    state, fresh = self._refresh_stream(part.stored, state), True
                    continue
                raise WrongExpectedVersion(part.stream, part.expected, state.version)
            sent_at = datetime.now(timezone.utc)
            current = kurrentdbclient.StreamState.NO_STREAM if state.version is None else state.version
            try:
                commit_position = self._client.append_to_stream(
                    part.stored,
                    events=[to_client_event(e, sent_at) for e in new],
                    current_version=current,
                    timeout=self._timeout,
                )
            except kx.WrongCurrentVersionError:
                state, fresh = self._refresh_stream(part.stored, state), True
                continue
            first_version = 0 if state.version is None else state.version + 1
            if len(new) == 1:
                positions = [commit_position]
            else:
                positions = self._positions_of(part.stored, first_version, new)
            for offset, (event, position) in enumerate(zip(new, positions)):
                state.ids[event.event_id] = (first_version + offset, position)
            state.version = first_version + len(new) - 1
            self._remember_stream(part.stored, state)
            return {e.event_id: state.ids[e.event_id] for e in part.unique}, {e.event_id for e in new}
        raise EventStoreError(
            f"stream {part.stream!r}: gave up after {MAX_APPEND_ATTEMPTS} attempts, other writers keep appending"
        )

    def _positions_of(self, stored: str, first_version: int, new: list[NewEvent]) -> list[int]:
        page = self._stream_page(stored, first_version, len(new))
        if [raw.id for raw in page] != [e.event_id for e in new]:
            raise EventStoreError(f"stream {stored!r}: the events read back after an append are not the ones written")
        return [raw.commit_position for raw in page]

    def _cached_stream(self, stored: str) -> _StreamState | None:
        with self._streams_lock:
            state = self._streams.get(stored)
            if state is not None:
                self._streams.move_to_end(stored)
            return state

    def _remember_stream(self, stored: str, state: _StreamState) -> None:
        with self._streams_lock:
            self._streams[stored] = state
            self._streams.move_to_end(stored)
            while len(self._streams) > STREAM_CACHE_SIZE:
                self._streams.popitem(last=False)

    def _refresh_stream(self, stored: str, state: _StreamState) -> _StreamState:
        """Bring ``state`` up to date by reading only the events after its version."""
        cursor = 0 if state.version is None else state.version + 1
        while True:
            page = self._stream_page(stored, cursor, self._page_size)
            for raw in page:
                state.ids[raw.id] = (raw.stream_position, raw.commit_position)
                state.version = raw.stream_position
            if len(page) < self._page_size:
                return state
            cursor = page[-1].stream_position + 1

    # --- reads -------------------------------------------------------------------------

    def read_stream(
        self, stream: str, from_version: int = 0, *, limit: int | None = None
    ) -> Iterator[RecordedEvent]:
        stored = stored_stream_name(self._namespace, stream)
        _check_limit(limit)
        return self._stream_events(stored, max(0, from_version), limit)

    def _stream_events(self, stored: str, cursor: int, limit: int | None) -> Iterator[RecordedEvent]:
        remaining = limit
        while remaining is None or remaining > 0:
            count = self._page_size if remaining is None else min(self._page_size, remaining)
            page = self._stream_page(stored, cursor, count)
            for raw in page:
                yield to_port_event(raw, self._namespace)
            if remaining is not None:
                remaining -= len(page)
            if len(page) < count:
                return
            cursor = page[-1].stream_position + 1

    def read_all(self, from_position: int = 0, *, limit: int | None = None) -> Iterator[RecordedEvent]:
        _check_limit(limit)
        if limit == 0:
            return iter(())
        return ChainReader(self, from_position).history(limit)

    def subscribe(self, from_position: int = 0, *, poll_interval: float = 0.05) -> "KurrentDBSubscription":
        """Catch-up subscription; KurrentDB pushes new events, so ``poll_interval`` is unused."""
        self._check_open()
        subscription = KurrentDBSubscription(self, from_position)
        self._subscriptions.add(subscription)
        return subscription

    def head_position(self) -> int | None:
        cursor: int | None = None
        while True:
            page = self._all_page(cursor, 64, backwards=True)
            for raw in page:
                if decode_metadata(raw.metadata) is not None:
                    return raw.commit_position
            if len(page) < 64:
                return None
            cursor = page[-1].commit_position

    def stream_version(self, stream: str) -> int | None:
        stored = stored_stream_name(self._namespace, stream)
        with self._translated("stream version", stream=stream):
            version = self._client.get_current_version(stored, timeout=self._timeout)
        return version if isinstance(version, int) else None

    def count(self) -> int:
        """Events in the log (walks the chain from the nearest known state)."""
        reader = ChainReader(self, float("inf"))
        for _ in reader.history(None):
            pass
        return reader.walker.state.count

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.stop()
        self._client.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "KurrentDBEventStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KurrentDBEventStore({self._client.connection_spec.targets!r}, namespace={self._namespace!r})"

    # --- seals (see events.kurrentdb.chain) ---------------------------------------------

    def seal(self) -> Seal | None:
        """Seal the chain at the newest event now (None for an empty log)."""
        head = self.head_position()
        if head is None:
            return None
        reader = ChainReader(self, head)
        for _ in reader.history(None):
            pass
        if reader.last_position is None:
            return None
        existing = self._anchors.sealed_at(reader.last_position)
        if existing is not None:
            return existing
        state = reader.walker.state
        seal = Seal(reader.last_position, state.count, state.hash, datetime.now(timezone.utc))
        self._anchors.write(seal, required=True)
        return seal

    def seals(self) -> list[Seal]:
        """Every seal in the seal stream, by position."""
        return self._anchors.all()

    def verify_seals(self) -> SealReport:
        """Recompute the chain from the first event and compare it with every seal
        (``events.kurrentdb.chain.check_seals``): what ``verify`` can prove here."""
        seals = self._anchors.all()
        return check_seals(self._our_events_from_start(), seals)

    def _our_events_from_start(self) -> Iterator[RecordedEvent]:
        cursor: int | None = None
        while True:
            page = self._all_page(cursor, self._page_size + (cursor is not None))
            fresh = [raw for raw in page if cursor is None or raw.commit_position > cursor]
            if not fresh:
                return
            for raw in fresh:
                metadata = decode_metadata(raw.metadata)
                if metadata is not None:
                    yield to_port_event(raw, self._namespace, metadata)
            cursor = fresh[-1].commit_position

    # --- client calls -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the KurrentDB store is closed")

    @contextmanager
    def _translated(
        self, operation: str, *, stream: str | None = None, expected: ExpectedVersion | None = None
    ) -> Iterator[None]:
        """Client errors as the port's (``translate_error``); refuses calls once closed."""
        self._check_open()
        try:
            yield
        except EventStoreError:
            raise
        except (kx.KurrentDBClientError, kx.ProgrammingError, ValueError) as error:
            raise translate_error(error, stream=stream, expected=expected, operation=operation) from error

    def _stream_page(self, stored: str, from_version: int, count: int) -> tuple[kurrentdbclient.RecordedEvent, ...]:
        with self._translated("read of a stream", stream=stored):
            try:
                return self._client.get_stream(
                    stored, stream_position=from_version, limit=count, timeout=self._timeout
                )
            except kx.NotFoundError:
                return ()

    def _all_page(
        self, cursor: int | None, count: int, *, backwards: bool = False
    ) -> tuple[kurrentdbclient.RecordedEvent, ...]:
        def read() -> tuple[kurrentdbclient.RecordedEvent, ...]:
            response = self._client.read_all(
                commit_position=cursor, backwards=backwards, limit=count, timeout=self._timeout, **self._filter
            )
            return tuple(response)

        with self._translated("read of $all"):
            try:
                return self._reconnecting(read)
            except kx.InvalidCommitPositionError:
                raise PositionGone(cursor) from None

    def _reconnecting(self, call: Callable[[], T]) -> T:
        """Streaming reads are not covered by the client's reconnect decorators."""
        try:
            return call()
        except kx.ServiceUnavailableError:
            self._client.reconnect()
            return call()

    def _subscribe_all(self, cursor: int | None) -> Any:
        with self._translated("subscription to $all"):
            return self._client.subscribe_to_all(commit_position=cursor, **self._filter)


def _refuse_ids_in_two_streams(parts: list[_Prepared]) -> None:
    first_stream: dict[UUID, str] = {}
    for part in parts:
        for event in part.unique:
            stream = first_stream.setdefault(event.event_id, part.stream)
            if stream != part.stream:
                raise DuplicateEventInBatch(
                    f"event {event.event_id} appears in two streams of one batch ({stream!r} and {part.stream!r})"
                )


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
