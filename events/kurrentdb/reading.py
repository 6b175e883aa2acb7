"""Reading ``$all`` on KurrentDB with the hash chain: where a read starts (seals and
chain states already computed), the reader that walks the chain, and the catch-up
subscription. Split from ``events.kurrentdb.store`` (appends and the store's entry points);
the chain itself and the seal rule are in ``events.kurrentdb.chain``.

Positions are KurrentDB commit positions, one per event (as the client documents),
compared only by order. A read of ``$all`` from a position has to start where the
chain's state is known, so it starts at the nearest anchor before it (a seal, a state
this process computed, or the genesis) and walks forward; KurrentDB's reads are
inclusive of their start position, its subscriptions exclusive, and either needs a
position where an event actually is, which every anchor is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import kurrentdbclient
from kurrentdbclient import exceptions as kx

from events.kurrentdb.chain import (
    GENESIS_STATE,
    ChainState,
    ChainWalker,
    Checkpoints,
    Seal,
    SealBook,
)
from events.kurrentdb.mapping import SEAL_TYPE, decode_metadata, to_port_event, translate_error
from events.store import EventStoreError, RecordedEvent, StoreUnavailable

if TYPE_CHECKING:
    from events.kurrentdb.store import KurrentDBEventStore

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1000  # chain states kept in memory, one per this many events
SEAL_REFRESH_SECONDS = 1.0
RESUBSCRIBE_ATTEMPTS = 10
_TRANSIENT = (
    kx.ServiceUnavailableError,
    kx.ConsumerTooSlowError,
    kx.AbortedByServerError,
    kx.DeadlineExceededError,
    kx.CancelledError,
    kx.ExceptionThrownByHandlerError,
)


class PositionGone(Exception):
    """A read started at a commit position that no longer holds an event (scavenged or
    tampered with); the reader starts again from an earlier anchor."""


class Anchors:
    """The seals (read from and written to the seal stream) and the chain states this
    process computed. Thread-safe; shared by every read of one store object."""

    def __init__(self, store: KurrentDBEventStore, seal_every: int):
        self._store = store
        self.seal_every = seal_every
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._seals = SealBook()
        self._seals_version: int | None = None
        self._seals_read_at = float("-inf")
        self._computed = Checkpoints()
        self._gone: set[int] = set()

    def before(self, position: float) -> tuple[int | None, ChainState, list[Seal]]:
        """Where a walk towards ``position`` starts (None: the genesis), the chain state
        there, and the seals the walk will meet."""
        self.refresh()
        with self._lock:
            start, state = None, GENESIS_STATE
            if position > 0:
                seal = self._seals.last_before(position, excluding=self._gone)
                computed = self._computed.last_before(position)
                if computed is not None and (seal is None or computed[0] > seal.position):
                    start, state = computed
                elif seal is not None:
                    start, state = seal.position, ChainState(seal.hash, seal.count)
            return start, state, self._seals.after(start)

    def forget(self, position: int) -> None:
        with self._lock:
            self._computed.discard(position)
            self._gone.add(position)

    def stepped(self, position: int, state: ChainState) -> None:
        """After each event walked: keep a state now and then, seal on the boundaries."""
        seal_due = False
        with self._lock:
            if state.count % CHECKPOINT_EVERY == 0:
                self._computed.add(position, state)
            if self.seal_every and state.count % self.seal_every == 0 and position not in self._seals:
                seal_due = True
        if seal_due:
            self.write(Seal(position, state.count, state.hash, _now()), required=False)

    def remember(self, position: int, state: ChainState) -> None:
        with self._lock:
            self._computed.add(position, state)

    def sealed_at(self, position: int) -> Seal | None:
        with self._lock:
            return self._seals.get(position)

    def all(self) -> list[Seal]:
        self.refresh(force=True)
        with self._lock:
            return self._seals.ordered()

    def write(self, seal: Seal, *, required: bool) -> None:
        """Automatic seals are best effort: a process that cannot write (connected to a
        follower, read-only credentials) logs once and stops sealing; ``seal()`` raises."""
        store = self._store
        try:
            with store._translated("writing a seal"):
                store._client.append_to_stream(
                    store._seal_stream,
                    events=[kurrentdbclient.NewEvent(type=SEAL_TYPE, data=seal.to_json(), id=seal.event_id(store.namespace))],
                    current_version=kurrentdbclient.StreamState.ANY,
                    timeout=store._timeout,
                )
        except EventStoreError as error:
            if required:
                raise
            log.warning("cannot write hash-chain seals, sealing stops in this process: %s", error)
            self.seal_every = 0
            return
        with self._lock:
            self._seals.add(seal)

    def refresh(self, *, force: bool = False) -> None:
        """Read the seals written since the last look (at most once a second unless forced)."""
        if not force and time.monotonic() - self._seals_read_at < SEAL_REFRESH_SECONDS:
            return
        store = self._store
        with self._refresh_lock:
            cursor = 0 if self._seals_version is None else self._seals_version + 1
            while True:
                page = store._stream_page(store._seal_stream, cursor, store._page_size)
                for raw in page:
                    self._seals_version = raw.stream_position
                    try:
                        seal = Seal.from_json(raw.data)
                    except ValueError as error:
                        log.warning("ignoring seal %s at version %d: %s", raw.id, raw.stream_position, error)
                        continue
                    with self._lock:
                        self._seals.add(seal)
                if len(page) < store._page_size:
                    break
                cursor = page[-1].stream_position + 1
            self._seals_read_at = time.monotonic()


class ChainReader:
    """Reads our events of ``$all`` in commit order from the nearest anchor before
    ``from_position``, computing the chain; yields those at ``from_position`` or later."""

    def __init__(self, store: KurrentDBEventStore, from_position: float):
        self._store = store
        self._from = from_position
        self._start()

    def _start(self) -> None:
        self.cursor, state, seals = self._store._anchors.before(self._from)
        self._anchor = self.cursor
        self.walker = ChainWalker(seals, state)
        self.last_position: int | None = None
        self._before_last: tuple[int, ChainState] | None = None

    def feed(self, raw: kurrentdbclient.RecordedEvent) -> RecordedEvent | None:
        """Walk one event read from ``$all``; the port's event if the caller wants it."""
        self.cursor = raw.commit_position
        metadata = decode_metadata(raw.metadata)
        if metadata is None:
            return None  # another application's event: not part of our log
        event = to_port_event(raw, self._store.namespace, metadata)
        if self.last_position is not None:
            self._before_last = (self.last_position, self.walker.state)
        digest = self.walker.step(event)
        self.last_position = event.position
        self._store._anchors.stepped(event.position, self.walker.state)
        if event.position < self._from:
            return None
        return replace(event, hash=digest)

    def history(self, limit: int | None) -> Iterator[RecordedEvent]:
        """Page by page up to the end of the log as it is now (no read held open
        between pages); the last state walked is remembered for the next read."""
        page_size = self._store._page_size
        yielded = 0
        try:
            while limit is None or yielded < limit:
                catching_up = self.last_position is None or self.last_position < self._from
                wanted = page_size if catching_up or limit is None else min(page_size, limit - yielded)
                try:
                    page = self._store._all_page(self.cursor, wanted + (self.cursor is not None))
                except PositionGone:
                    if self.cursor is None or self.cursor != self._anchor:
                        raise EventStoreError(f"commit position {self.cursor} vanished while reading $all") from None
                    self._store._anchors.forget(self.cursor)
                    self._start()
                    continue
                fresh = [raw for raw in page if self.cursor is None or raw.commit_position > self.cursor]
                if not fresh:
                    return
                for raw in fresh:
                    event = self.feed(raw)
                    if event is not None:
                        yield event
                        yielded += 1
                        if limit is not None and yielded >= limit:
                            return
        finally:
            # Readers page on from the last event (exclusive) or from it (inclusive, as
            # the relay does with its checkpoint): keep the states after both.
            if self._before_last is not None:
                self._store._anchors.remember(*self._before_last)
            if self.last_position is not None:
                self._store._anchors.remember(self.last_position, self.walker.state)


class KurrentDBSubscription:
    """History from ``from_position`` (inclusive), then events as KurrentDB pushes
    them. ``stop()`` (any thread), or closing the store, ends the iteration; transient
    drops re-subscribe from the last position read, up to ``RESUBSCRIBE_ATTEMPTS``
    times in a row, then raise ``StoreUnavailable``."""

    def __init__(self, store: KurrentDBEventStore, from_position: int):
        self._store = store
        self._from = from_position
        self._stopped = threading.Event()
        self._live: Any = None
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[RecordedEvent]:
        return self._events()

    def __enter__(self) -> "KurrentDBSubscription":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            live = self._live
        if live is not None:
            live.stop()

    def _ended(self) -> bool:
        return self._stopped.is_set() or self._store.closed

    def _events(self) -> Iterator[RecordedEvent]:
        try:
            reader = ChainReader(self._store, self._from)
            for event in reader.history(None):
                if self._stopped.is_set():
                    return
                yield event
        except StoreUnavailable:
            if self._store.closed:
                return
            raise
        failures = 0
        while not self._ended():
            try:
                live = self._store._subscribe_all(reader.cursor)
            except StoreUnavailable:
                failures += 1
                if self._ended():
                    return
                if failures > RESUBSCRIBE_ATTEMPTS:
                    raise
                self._stopped.wait(_backoff(failures))
                continue
            with self._lock:
                self._live = live
            try:
                if self._stopped.is_set():
                    return
                for raw in live:
                    event = reader.feed(raw)
                    failures = 0
                    if event is not None:
                        yield event
                    if self._stopped.is_set():
                        return
                if self._ended():
                    return
                failures += 1  # the server ended the subscription: follow on from where it was
                if failures > RESUBSCRIBE_ATTEMPTS:
                    raise StoreUnavailable("KurrentDB keeps ending the subscription to $all")
                self._stopped.wait(_backoff(failures))
            except kx.CancelledByClientError:
                return
            except _TRANSIENT as error:
                if self._ended():
                    return
                failures += 1
                if failures > RESUBSCRIBE_ATTEMPTS:
                    raise translate_error(error, operation="subscription to $all") from error
                log.warning("subscription dropped (%s), re-subscribing after position %s", error, reader.cursor)
                self._stopped.wait(_backoff(failures))
            except kx.KurrentDBClientError as error:
                raise translate_error(error, operation="subscription to $all") from error
            finally:
                live.stop()
                with self._lock:
                    self._live = None


def _backoff(failures: int) -> float:
    return min(5.0, 0.1 * 2 ** (failures - 1))


def _now() -> datetime:
    return datetime.now(timezone.utc)
