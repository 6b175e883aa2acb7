"""The write side of ``events.sqlite``: one connection, its caches, group commit.

Appends made at the same time by several threads (the HTTP server's worker pool)
are committed together: the first thread to get the write lock takes every
request queued so far, in arrival order, and runs them in ONE transaction, each
inside its own savepoint. A request that fails (a version conflict) is rolled
back to its savepoint and gets its own error; the others commit. One fsync then
covers many requests, and the random index pages they share are written once.
Calls from one thread commit in call order.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from events.hashing import GENESIS
from events.sqlite_batch import Plan, PreparedBatch, from_micros
from events.store import AppendResult, EventStoreError, StoreUnavailable

INSERT_EVENT = (
    "INSERT INTO events(position, stream_id, stream_version, event_id, id_key, type, schema_version,"
    " occurred_at, recorded_at, data, metadata, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
_FIND_IDS = (
    "SELECT event_id, position, stream_version FROM events WHERE id_key IN (SELECT value FROM json_each(?))"
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


@dataclass(eq=False)
class _Request:
    batch: PreparedBatch
    results: list[AppendResult] | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Heads:
    """What the next append continues from: log head, chain head, last recorded_at."""

    position: int
    chain: bytes
    recorded: int
    streams: dict[str, list] = field(default_factory=dict)  # written earlier in this group


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
        self._streams: dict[str, tuple[int, int | None]] = {}

    def submit(self, batch: PreparedBatch) -> list[AppendResult]:
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
            self.conn.close()

    # --- one group -------------------------------------------------------------------

    def _commit_queued(self) -> None:
        with self._queue_lock:
            group = [self._queue.popleft()]
            size = len(group[0].batch.events)
            while self._queue and size + len(self._queue[0].batch.events) <= MAX_GROUP_EVENTS:
                size += len(self._queue[0].batch.events)
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
        try:
            self._catch_up()
            heads = _Heads(self._head, self._chain_head, self._last_recorded)
            applied = []
            for request in group:
                conn.execute("SAVEPOINT request")
                try:
                    plan = self._write(request.batch, heads)
                except (EventStoreError, sqlite3.IntegrityError) as error:
                    conn.execute("ROLLBACK TO request")
                    request.error = self._translated(error)
                    continue
                finally:
                    conn.execute("RELEASE request")
                applied.append((request, plan))
                heads.position, heads.chain = plan.head, plan.chain_head
                if plan.rows:
                    heads.recorded = request.batch.recorded
                heads.streams.update(plan.versions)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        for request, plan in applied:
            request.results = plan.results
        self._head, self._chain_head, self._last_recorded = heads.position, heads.chain, heads.recorded
        self._remember_streams(heads.streams)
        if any(plan.rows for _, plan in applied):
            self._on_commit()

    def _write(self, batch: PreparedBatch, heads: _Heads) -> Plan:
        """Plan one request against the heads and insert its rows (inside its savepoint)."""
        if batch.recorded < heads.recorded:  # keep recorded_at non-decreasing in log order
            batch.stamp(from_micros(heads.recorded))
        stored = self._stored_duplicates(batch)
        streams = self._resolve_streams(batch.new_event_streams(stored), heads.streams)
        plan = batch.plan(stored, streams, heads.position, heads.chain)
        if plan.rows:
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
            self._streams.clear()
        else:
            for name, stream_id, version in conn.execute(_STREAMS_CHANGED_SINCE, (self._head,)):
                self._streams[name] = (stream_id, version)
        last = conn.execute("SELECT hash, recorded_at FROM events WHERE position = ?", (head,)).fetchone()
        self._head = head
        self._chain_head, self._last_recorded = last if last else (GENESIS, 0)

    def _stored_duplicates(self, batch: PreparedBatch) -> dict[bytes, tuple[int, int]]:
        """event_id bytes -> (position, stream_version) of the batch's events already in the log."""
        if not batch.ids:
            return {}
        found = self.conn.execute(_FIND_IDS, (orjson.dumps(batch.keys()),)).fetchall()
        if not found:
            return {}
        wanted = set(batch.ids)  # the index holds 8-byte prefixes: confirm the full id
        return {row[0]: (row[1], row[2]) for row in found if row[0] in wanted}

    def _resolve_streams(self, names: set[str], written: dict[str, list]) -> dict[str, list]:
        """stream -> [stream id, current version or None] for ``names``, creating the missing
        streams (inside the transaction: a rollback forgets them)."""
        cache = self._streams
        streams: dict[str, list] = {}
        missing = []
        for name in names:
            known = written.get(name) or cache.get(name)
            if known is None:
                missing.append(name)
            else:
                streams[name] = [known[0], known[1]]
        if missing:
            conn = self.conn
            for name, stream_id, version in conn.execute(_FIND_STREAMS, (orjson.dumps(missing),)):
                streams[name] = [stream_id, version]
            new = [name for name in missing if name not in streams]
            if new:
                first = (conn.execute("SELECT max(id) FROM streams").fetchone()[0] or 0) + 1
                created = list(enumerate(new, start=first))
                conn.executemany("INSERT INTO streams(id, name) VALUES (?, ?)", created)
                streams.update((name, [stream_id, None]) for stream_id, name in created)
        return streams

    def _remember_streams(self, streams: dict[str, list]) -> None:
        cache = self._streams
        if len(cache) + len(streams) > self._stream_cache_size:
            # Forget the oldest half: a miss costs one indexed lookup, the memory stays bounded.
            for name in list(cache)[: len(cache) // 2 + 1]:
                del cache[name]
        for name, (stream_id, version) in streams.items():
            cache[name] = (stream_id, version)

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
            return StoreUnavailable(f"event store {self.path}: append failed: {error}")
        return error
