"""The write side of ``events.sqlite.store``: one connection, its caches, group commit.

Appends made at the same time by several threads (the HTTP server's worker pool)
are committed together: the first thread to get the write lock takes every
request queued so far, in arrival order, and runs them in ONE transaction, each
inside its own savepoint. A request that fails (a version conflict) is rolled
back to its savepoint and gets its own error; the others commit. One fsync then
covers many requests, and the random index pages they share are written once.
Calls from one thread commit in call order.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from events.hashing import GENESIS
from events.encoded import EncodedOutcomes
from events.sqlite.batch import NO_VERSION, Plan, PreparedBatch, StreamHeads
from events.times import from_micros
from events.sqlite.encoded import EncodedPlan, EncodedRequest
from events.sqlite.ids import IdIndex, IdPlaces, IdPositions
from events.store import AppendResult, EventStoreError, StoreFull, StoreUnavailable

log = logging.getLogger(__name__)

INSERT_EVENT = (
    "INSERT INTO events(position, stream_id, stream_version, event_id, id_key, type, schema_version,"
    " occurred_at, recorded_at, data, metadata, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
_FIND_STREAMS = (
    "SELECT s.name, s.id, (SELECT max(stream_version) FROM events WHERE stream_id = s.id)"
    " FROM streams s WHERE s.name IN (SELECT value FROM json_each(?))"
)
_STREAMS_CHANGED_SINCE = (
    "SELECT s.name, s.id, (SELECT max(stream_version) FROM events WHERE stream_id = s.id)"
    " FROM streams s WHERE s.id IN (SELECT stream_id FROM events WHERE position > ?)"
)
_UNKNOWN_HEAD = -1
# Beyond this many rows appended by another process, drop the stream cache instead of patching it.
_FOREIGN_DELTA_PATCH_LIMIT = 20_000
# A group stops growing past this many events (a bigger single request still runs alone).
MAX_GROUP_EVENTS = 50_000
# What an SQLite error code means for whoever must fix it (sqlite3.Error.sqlite_errorname).
_CAUSES = {
    "SQLITE_FULL": "the disk or the database's size limit is full",
    "SQLITE_READONLY": "the database file cannot be written (read-only file, folder or file system)",
    "SQLITE_BUSY": "another connection held the write lock past busy_timeout",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
    "SQLITE_IOERR": "the disk reported an I/O error",
}


@dataclass(eq=False)
class _Request:
    batch: PreparedBatch | EncodedRequest
    results: list[AppendResult] | EncodedOutcomes | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Heads:
    """What the next append continues from: log head, chain head, last recorded_at."""

    position: int
    chain: bytes
    recorded: int
    ids: IdPositions = field(default_factory=dict)  # written earlier in this group (not yet in the index)


class SQLiteWriter:
    """The one writer connection of a store object, with its caches (stream heads,
    log head, chain head), valid for log head ``_head`` and refreshed when another
    process moved it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: str,
        *,
        stream_cache_size: int,
        on_commit: Callable[[], None],
    ):
        self.conn = conn
        self.path = path
        self.lock = threading.Lock()  # held while the connection is in use
        self._queue: deque[_Request] = deque()
        self._queue_lock = threading.Lock()
        self._stream_cache_size = stream_cache_size
        self._on_commit = on_commit
        self._closed = False
        self._head = _UNKNOWN_HEAD
        self._chain_head = GENESIS
        self._last_recorded = 0
        # A cache of stream ids and versions, which plans update in place: any rollback drops it.
        self._streams = StreamHeads({}, {})
        self._ids = IdIndex()  # every committed event id up to _head, built at the first append

    def submit(self, batch: PreparedBatch | EncodedRequest) -> list[AppendResult] | EncodedOutcomes:
        """Commit ``batch`` (alone or with concurrent ones) and return its results."""
        request = _Request(batch)
        with self._queue_lock:
            self._queue.append(request)
        with self.lock:
            while not request.done:
                self._commit_queued()
        if request.error is not None:
            raise request.error
        return request.results

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self._save_id_snapshot()
            self.conn.close()

    def _save_id_snapshot(self) -> None:
        """Leave the id index's snapshot current when many ids are not in it (a bulk
        ingest ends with up to a quarter of the log after it): the next writer of this
        log then reads it (0.25-1 s at 10.9M ids) instead of scanning those rows at its
        first append (measured: 18-29 s, during a request, for a 2.9M-row tail). Best
        effort: a busy or failing store keeps the older snapshot, which stays valid."""
        if not self._ids.worth_saving():
            return
        conn = self.conn
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._catch_up()
                self._ids.write_snapshot(conn, self._head)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            log.info("event store %s: the id snapshot was not saved at close (%s)", self.path, error)

    # --- one group -------------------------------------------------------------------

    def _commit_queued(self) -> None:
        with self._queue_lock:
            group = [self._queue.popleft()]
            size = len(group[0].batch)
            while self._queue and size + len(self._queue[0].batch) <= MAX_GROUP_EVENTS:
                size += len(self._queue[0].batch)
                group.append(self._queue.popleft())
        try:
            if self._closed:
                raise StoreUnavailable(f"event store {self.path} is closed")
            self._commit_group(group)
        except BaseException as error:  # the whole group failed: each caller gets its own error
            for request in group:
                if request.error is None and request.results is None:
                    request.error = self._group_failure(error)
            if not isinstance(error, Exception):  # KeyboardInterrupt and the like stop the leader too
                raise
        finally:
            for request in group:
                request.done = True

    def _commit_group(self, group: list[_Request]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        snapshot_written = False
        try:
            self._catch_up()
            if not self._ids.built:
                self._ids.build(conn, self._head)
            if self._ids.snapshot_due():
                self._ids.write_snapshot(conn, self._head)
                snapshot_written = True
            heads = _Heads(self._head, self._chain_head, self._last_recorded)
            applied = []
            for number, request in enumerate(group, start=1):
                conn.execute("SAVEPOINT request")
                try:
                    plan = self._write(request.batch, heads)
                except (EventStoreError, sqlite3.IntegrityError) as error:
                    conn.execute("ROLLBACK TO request")
                    self._streams = StreamHeads({}, {})  # the plan may have moved versions it did not write
                    request.error = self._translated(error)
                    continue
                finally:
                    if conn.in_transaction:  # a full disk may have rolled it all back: keep that error
                        conn.execute("RELEASE request")
                applied.append((request, plan))
                heads.position, heads.chain = plan.head, plan.chain_head
                if plan.count:
                    heads.recorded = request.batch.recorded
                    if number < len(group):  # later requests of the group must see these ids
                        heads.ids.update(zip(*plan.written))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._streams = StreamHeads({}, {})
            if snapshot_written:
                self._ids.forget_snapshot_write()
            raise
        for request, plan in applied:
            request.results = plan.results
            if plan.count:
                self._ids.add(*plan.written)
        self._head, self._chain_head, self._last_recorded = heads.position, heads.chain, heads.recorded
        self._bound_stream_cache()
        if any(plan.count for _, plan in applied):
            self._on_commit()

    def _write(self, batch: PreparedBatch | EncodedRequest, heads: _Heads) -> Plan | EncodedPlan:
        """Plan one request against the heads and insert its rows (inside its savepoint)."""
        if batch.recorded < heads.recorded:  # keep recorded_at non-decreasing in log order
            batch.stamp(from_micros(heads.recorded))
        stored = self._stored_duplicates(batch.ids, heads.ids)
        streams = self._resolve_streams(batch.new_event_streams(stored))
        plan = batch.plan(stored, streams, heads.position, heads.chain)
        if plan.count:
            self.conn.executemany(INSERT_EVENT, plan.rows)
        return plan

    # --- what only the database knows ---------------------------------------------------------

    def _catch_up(self) -> None:
        """Refresh the caches if another process (or store object) appended since our last write."""
        conn = self.conn
        head = conn.execute("SELECT max(position) FROM events").fetchone()[0] or 0
        if head == self._head:
            return
        if self._head == _UNKNOWN_HEAD or head < self._head or head - self._head > _FOREIGN_DELTA_PATCH_LIMIT:
            self._streams = StreamHeads({}, {})
        else:
            for name, stream_id, version in conn.execute(_STREAMS_CHANGED_SINCE, (self._head,)):
                self._streams.ids[name] = stream_id
                self._streams.versions[name] = NO_VERSION if version is None else version
        if self._ids.built:  # their ids too; a log that went back is indexed again from scratch
            if head < self._head:
                self._ids = IdIndex()
            else:
                self._ids.scan(conn, self._head)
        last = conn.execute("SELECT hash, recorded_at FROM events WHERE position = ?", (head,)).fetchone()
        self._head = head
        self._chain_head, self._last_recorded = last if last else (GENESIS, 0)

    def _stored_duplicates(self, ids: list[bytes], in_group: IdPositions) -> IdPlaces:
        """event_id bytes -> (position, stream_version) of ``ids`` already in the log,
        committed or written earlier in this group."""
        return self._ids.find(self.conn, ids, in_group) if ids else {}

    def _resolve_streams(self, names: set[str]) -> StreamHeads:
        """The stream cache, holding every stream of ``names``: those it lacks are read, or
        created (inside the transaction: a rollback forgets them, and drops the cache)."""
        streams = self._streams
        known = streams.ids
        missing = [name for name in names if name not in known]
        if missing:
            conn = self.conn
            for name, stream_id, version in conn.execute(_FIND_STREAMS, (orjson.dumps(missing),)):
                streams.ids[name] = stream_id
                streams.versions[name] = NO_VERSION if version is None else version
            new = [name for name in missing if name not in known]
            if new:
                first = (conn.execute("SELECT max(id) FROM streams").fetchone()[0] or 0) + 1
                created = list(enumerate(new, start=first))
                conn.executemany("INSERT INTO streams(id, name) VALUES (?, ?)", created)
                streams.ids.update((name, stream_id) for stream_id, name in created)
                streams.versions.update((name, NO_VERSION) for name in new)
        return streams

    def _bound_stream_cache(self) -> None:
        cache = self._streams
        if len(cache.ids) > self._stream_cache_size:
            # Forget the oldest half: a miss costs one indexed lookup, the memory stays bounded.
            for name in list(cache.ids)[: len(cache.ids) // 2 + 1]:
                del cache.ids[name], cache.versions[name]

    def _group_failure(self, error: BaseException) -> BaseException:
        if isinstance(error, EventStoreError):
            kind = StoreUnavailable if isinstance(error, StoreUnavailable) else EventStoreError
            failure: BaseException = kind(str(error))
        elif isinstance(error, sqlite3.Error):
            failure = self._translated(error)
        else:
            failure = StoreUnavailable(f"event store {self.path}: append failed: {type(error).__name__}: {error}")
        failure.__cause__ = error
        return failure

    def _translated(self, error: BaseException) -> BaseException:
        if isinstance(error, sqlite3.IntegrityError):
            return EventStoreError(f"event store {self.path}: integrity violation: {error}")
        if isinstance(error, sqlite3.Error):
            primary = "_".join((getattr(error, "sqlite_errorname", None) or "").split("_")[:2])  # IOERR_WRITE: IOERR
            kind = StoreFull if primary == "SQLITE_FULL" else StoreUnavailable
            cause = _CAUSES.get(primary)
            shown = f"{error} ({cause})" if cause else str(error)
            return kind(f"event store {self.path}: append failed: {shown}; nothing of it was written")
        return error
