"""The embedded event store: one SQLite file, WAL, durable on commit.

Durability. The file runs in WAL mode with ``synchronous=FULL``: every commit
fsyncs the write-ahead log before ``append`` returns, so an acknowledged append
survives a process crash *and* a power loss. (With WAL, ``NORMAL`` would only
fsync at checkpoints: safe against a crashed process, but a power cut could lose
the last acknowledged transactions, which would break "durable on commit".)
Throughput comes from batching instead: ``append_batch`` writes many streams in
one transaction, so one fsync covers thousands of events. A transaction is
all-or-nothing: a killed process leaves the whole batch or none of it.

Concurrency. One writer connection per store object, guarded by a lock; every
write transaction is ``BEGIN IMMEDIATE`` (it waits up to ``busy_timeout`` for a
writer in another process, then raises ``StoreUnavailable`` naming the lock).
Appends that arrive while the writer is busy are committed together, each in its
own savepoint (group commit, ``events.sqlite.writer``); the pure planning of an
append (duplicates, versions, positions, hash chain) is ``events.sqlite.batch``.
Reads run on one connection per thread, page by page (one short read transaction
per page), and see the last commit without blocking the writer (WAL snapshots).
Several processes may share the file: at the start of each write transaction the
writer compares the log head with the last one it knew and refreshes its caches
(stream heads, hash-chain head, last recorded_at, id index) from the rows it missed.

Schema (``PRAGMA user_version`` = 2)::

    streams(id INTEGER PRIMARY KEY, name TEXT UNIQUE)
    events(position INTEGER PRIMARY KEY,   -- global order (dense here; the port promises only order)
           stream_id -> streams.id, stream_version,          -- UNIQUE (stream_id, stream_version)
           event_id BLOB(16), id_key INTEGER,                -- id_key: first 8 bytes of event_id, signed
           type, schema_version,
           occurred_at INTEGER, recorded_at INTEGER,        -- microseconds since 1970-01-01 UTC
           data BLOB, metadata BLOB,                         -- canonical JSON body, platform metadata
           hash BLOB(32))                                    -- events.hashing chain in position order
    id_snapshot(chunk INTEGER PRIMARY KEY, upto_position,   -- the writer's id index as of a position
                keys BLOB, positions BLOB)                   -- (events.sqlite.ids)

Idempotency (an event id is stored once) has no SQLite index: a random uuid4 index
dirtied a page per event per commit and cost as much as the rest of the insert. The
writer keeps every stored id in memory instead (``events.sqlite.ids``): sorted numpy
arrays of a 32-bit hash of the id -> position, 8 bytes per event, plus a dict of the
latest ids (~150 bytes each, at most max(64k, 1/16 of the arrays)): ~8-17 bytes per
event, so a writer of a 10M-event log holds ~80-170 MB (briefly twice the arrays while
merging). It is
built at a store object's first append from ``id_snapshot`` plus the rows after it;
the snapshot is rewritten as the log grows. Readers need none of it. Stream names are
stored once, events carry integer stream ids.

Version 1 files (with the ``events_by_id_key`` index) are upgraded when a store
object opens them, in one transaction: the index is dropped and ``id_snapshot`` created.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote
from uuid import UUID

from events.encoded import EncodedBatch, EncodedOutcomes
from events.raw import RAW_COLUMNS, RAW_PAGE_SIZE, RawPage, checked_raw_request
from events.sqlite.batch import PreparedBatch
from events.times import EPOCH, to_micros
from events.sqlite.encoded import EncodedRequest
from events.sqlite.ids import SNAPSHOT_TABLE
from events.sqlite.writer import SQLiteWriter
from events.store import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StoreUnavailable,
    StreamAppend,
)

SCHEMA_VERSION = 2
URL_PREFIX = "sqlite:///"
MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL REFERENCES streams(id),
    stream_version INTEGER NOT NULL,
    event_id BLOB NOT NULL,
    id_key INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    data BLOB NOT NULL,
    metadata BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_stream ON events(stream_id, stream_version);
-- version 1 indexed event ids in SQLite, the writer now keeps them in memory (events.sqlite.ids)
DROP INDEX IF EXISTS events_by_id_key;
""" + SNAPSHOT_TABLE

_COLUMNS = (
    "e.position, s.name, e.stream_version, e.event_id, e.type, e.schema_version,"
    " e.occurred_at, e.recorded_at, e.data, e.metadata, e.hash"
)
_READ_ALL = (
    f"SELECT {_COLUMNS} FROM events e JOIN streams s ON s.id = e.stream_id"
    " WHERE e.position >= ? ORDER BY e.position LIMIT ?"
)
_READ_STREAM = (
    f"SELECT {_COLUMNS} FROM events e JOIN streams s ON s.id = e.stream_id"
    " WHERE e.stream_id = ? AND e.stream_version >= ? ORDER BY e.stream_version LIMIT ?"
)
_STREAM_VERSION = (
    "SELECT max(e.stream_version) FROM events e WHERE e.stream_id = (SELECT id FROM streams WHERE name = ?)"
)
_NAMES_PER_QUERY = 500  # stream ids per lookup: well under SQLite's limit on bound parameters

# The writer's page cache: 32 MiB. The OS caches the file anyway, and what this cache
# keeps is the API's memory. Measured on a 10.9M-event log, appending 150,000 events to
# existing streams in batches of 1,000 (two rounds): 256 MiB 23-28 us of CPU an event and
# +88 MiB, 64 MiB 17-18 us and +73-80, 16 MiB 22 us and +29-39 (the id index's recent ids,
# ~22 MiB, included). On `bench million`'s 10.5M-event store, appending 329,500 events of
# new customers in batches of 500 (2026-12-07): 64 MiB 11.5-13.7 us and +84 MiB, 32 MiB
# 12.2-12.8 us and +49, 16 MiB 12.0 us and +32 (two rounds, one at 16).
def writer_pragmas(cache_mib: int = 32, wal_autocheckpoint: int = 10_000) -> list[str]:
    """The PRAGMAs of the writer connection (also applied by the ingest floor benchmark,
    so that baseline and store run under the same durability and cache settings)."""
    return [
        "journal_mode=WAL",
        "synchronous=FULL",  # fsync the WAL on every commit: durable on commit, see above
        f"cache_size={-1024 * int(cache_mib)}",
        f"wal_autocheckpoint={int(wal_autocheckpoint)}",  # fewer, larger checkpoints
        "journal_size_limit=67108864",  # truncate the WAL back to 64 MiB after a checkpoint
        "temp_store=MEMORY",
    ]


def path_from_url(url: str) -> str:
    """``sqlite:///data/events.db`` -> ``data/events.db`` (relative), ``sqlite:////abs/x.db``
    -> ``/abs/x.db``, ``sqlite:///:memory:`` -> ``:memory:`` (the SQLAlchemy convention)."""
    if not url.startswith(URL_PREFIX):
        raise ValueError(f"not a SQLite store URL: {url!r} (expected {URL_PREFIX}PATH)")
    path = unquote(url[len(URL_PREFIX) :].split("?", 1)[0])
    if not path:
        raise ValueError(f"SQLite store URL without a path: {url!r} (expected {URL_PREFIX}PATH)")
    return path


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _recorded_events(rows: list[tuple]) -> list[RecordedEvent]:
    """Rows of ``_COLUMNS`` as port envelopes. One append shares one recorded_at, so
    consecutive rows reuse the datetime."""
    events = []
    last_micros, last_recorded = None, None
    for position, stream, version, event_id, type_, schema_version, occurred, recorded, data, metadata, hash_ in rows:
        if recorded != last_micros:
            last_micros, last_recorded = recorded, EPOCH + timedelta(0, 0, recorded)
        events.append(
            RecordedEvent(
                position, stream, version, UUID(bytes=event_id), type_, schema_version,
                EPOCH + timedelta(0, 0, occurred), last_recorded, data, metadata, hash_,
            )  # fmt: skip
        )
    return events


class SQLiteEventStore:
    """``events.store.EventStore`` on one SQLite file (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cache_mib: int = 32,
        busy_timeout: float = 30.0,
        wal_autocheckpoint: int = 10_000,
        page_size: int = 1000,
        stream_cache_size: int = 200_000,
        clock: Callable[[], datetime] = _utc_now,
    ):
        self.path = str(path)
        self._memory = self.path == MEMORY
        self._cache_mib = cache_mib
        self._busy_timeout = busy_timeout
        self._page_size = page_size
        self._clock = clock
        self._appended = threading.Condition()
        self._append_count = 0
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer = SQLiteWriter(
            self._open_writer(wal_autocheckpoint),
            self.path,
            stream_cache_size=stream_cache_size,
            on_commit=self._notify_appended,
        )

    @classmethod
    def open(cls, url: str, **options) -> "SQLiteEventStore":
        """Open the store named by ``sqlite:///path`` (relative), ``sqlite:////abs/path`` or
        ``sqlite:///:memory:``."""
        return cls(path_from_url(url), **options)

    # --- connections -------------------------------------------------------------

    def _open_writer(self, wal_autocheckpoint: int) -> sqlite3.Connection:
        if not self._memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreUnavailable(f"cannot create the folder of the event store {self.path}: {error}") from None
            if Path(self.path).is_dir():
                raise StoreUnavailable(f"event store path {self.path} is a directory, not a database file")
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            for pragma in writer_pragmas(self._cache_mib, wal_autocheckpoint):
                conn.execute(f"PRAGMA {pragma}")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if not self._memory and mode.lower() != "wal":
                raise StoreUnavailable(f"event store {self.path}: the file system refused WAL mode ({mode})")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreUnavailable(
                        f"event store {self.path} has schema version {version}; this code knows {SCHEMA_VERSION}"
                    )
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise StoreUnavailable(f"cannot open the event store {self.path}: {error}") from None
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only=1")
            conn.execute(f"PRAGMA cache_size={-1024 * max(8, self._cache_mib // 4)}")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        """Run one read statement to completion (its read transaction ends with it)."""
        self._ensure_open()
        try:
            if self._memory:  # one in-memory database, shared by all threads through the writer
                with self._writer.lock:
                    return self._writer.conn.execute(sql, params).fetchall()
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise StoreUnavailable(f"event store {self.path}: read failed: {error}") from None

    def _ensure_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"event store {self.path} is closed")

    # --- appending ---------------------------------------------------------------

    def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion
    ) -> AppendResult:
        return self.append_batch([StreamAppend(stream, list(events), expected_version)])[0]

    def append_batch(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """All streams in one transaction: a version conflict anywhere writes nothing.
        Concurrent calls share transactions (see ``events.sqlite.writer``)."""
        batch = PreparedBatch(appends, self._clock())
        self._ensure_open()
        return self._writer.submit(batch)

    def append_encoded(self, batch: EncodedBatch, *, refuse_duplicates: bool = False) -> EncodedOutcomes:
        """The bulk path (semantics in ``events.encoded``): every event to its stream with
        ``StreamState.ANY``, positions in input order, duplicates report the original's
        place (or, ``refuse_duplicates``, raise ``DuplicatesFound``). One transaction, shared
        with concurrent appends like ``append_batch``."""
        request = EncodedRequest(batch, to_micros(self._clock()), refuse_duplicates=refuse_duplicates)
        self._ensure_open()
        if not len(request):
            return EncodedOutcomes()
        return self._writer.submit(request)

    def _notify_appended(self) -> None:
        with self._appended:
            self._append_count += 1
            self._appended.notify_all()

    # --- reading -----------------------------------------------------------------

    def read_stream(
        self, stream: str, from_version: int = 0, *, limit: int | None = None
    ) -> Iterator[RecordedEvent]:
        """One stream in version order from ``from_version`` (inclusive), paged."""
        _check_limit(limit)
        return self._read_stream(stream, max(0, from_version), limit)

    def _read_stream(self, stream: str, version: int, limit: int | None) -> Iterator[RecordedEvent]:
        found = self._query("SELECT id FROM streams WHERE name = ?", (stream,))
        if not found:
            return
        stream_id = found[0][0]
        remaining = limit
        while remaining is None or remaining > 0:
            size = self._page_size if remaining is None else min(self._page_size, remaining)
            rows = self._query(_READ_STREAM, (stream_id, version, size))
            yield from _recorded_events(rows)
            if len(rows) < size:
                return
            version = rows[-1][2] + 1
            if remaining is not None:
                remaining -= len(rows)

    def read_all(self, from_position: int = 0, *, limit: int | None = None) -> Iterator[RecordedEvent]:
        """The log in global order from ``from_position`` (inclusive), paged."""
        _check_limit(limit)
        return self._read_all(from_position, limit)

    def _read_all(self, position: int, limit: int | None) -> Iterator[RecordedEvent]:
        remaining = limit
        while remaining is None or remaining > 0:
            size = self._page_size if remaining is None else min(self._page_size, remaining)
            rows = self._query(_READ_ALL, (position, size))
            yield from _recorded_events(rows)
            if len(rows) < size:
                return
            position = rows[-1][0] + 1
            if remaining is not None:
                remaining -= len(rows)

    def read_page(self, from_position: int, size: int) -> list[RecordedEvent]:
        """Up to ``size`` events from ``from_position`` (inclusive), read in one statement."""
        return _recorded_events(self._query(_READ_ALL, (from_position, size)))

    def read_raw(
        self, from_position: int = 0, *, page_size: int = RAW_PAGE_SIZE, columns: Sequence[str] = RAW_COLUMNS
    ) -> Iterator[RawPage]:
        """The log as pages of raw rows: ``events.raw.RawReader``. Positions here are
        dense, and ``recorded_at`` never decreases along the log (the writer stamps each
        append with a time no earlier than the last one)."""
        columns = checked_raw_request(page_size, columns)
        sql = f"SELECT {', '.join(columns)} FROM events WHERE position >= ? ORDER BY position LIMIT ?"
        stream = columns.index("stream_id")
        names: dict[int, str] = {}
        known = 0  # the highest stream id loaded
        while True:
            rows = self._query(sql, (from_position, page_size))
            if not rows:
                return
            missing = {row[stream] for row in rows} - names.keys()
            if missing:
                lowest, top = min(missing), max(missing)
                if known and lowest > known:  # only streams newer than any seen: one range (reading along the log)
                    names.update(self._query("SELECT id, name FROM streams WHERE id > ? AND id <= ?", (known, top)))
                else:  # only this page's streams: a live tail costs the page, not every stream
                    self._load_stream_names(sorted(missing), names)
                known = max(known, top)
            yield rows, names
            if len(rows) < page_size:
                return
            from_position = rows[-1][0] + 1

    def _load_stream_names(self, ids: Sequence[int], names: dict[int, str]) -> None:
        for start in range(0, len(ids), _NAMES_PER_QUERY):
            chunk = ids[start:start + _NAMES_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            names.update(self._query(f"SELECT id, name FROM streams WHERE id IN ({marks})", tuple(chunk)))

    def subscribe(self, from_position: int = 0, *, poll_interval: float = 0.05) -> "SQLiteSubscription":
        return SQLiteSubscription(self, from_position, poll_interval)

    def head_position(self) -> int | None:
        return self._query("SELECT max(position) FROM events", ())[0][0]

    def stream_version(self, stream: str) -> int | None:
        return self._query(_STREAM_VERSION, (stream,))[0][0]

    def count(self) -> int:
        """Number of stored events (a health-check figure)."""
        return self._query("SELECT count(*) FROM events", ())[0][0]

    # --- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._appended:
            self._appended.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "SQLiteEventStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteEventStore({self.path!r})"


class SQLiteSubscription:
    """Catch-up subscription: pages through history, then waits for new commits. It
    wakes at once on appends made through the same store object and polls every
    ``poll_interval`` seconds for appends by other processes. ``stop()`` (from any
    thread) or closing the store ends the iteration."""

    def __init__(self, store: SQLiteEventStore, from_position: int, poll_interval: float):
        self._store = store
        self._position = from_position
        self._poll_interval = poll_interval
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()
        with self._store._appended:
            self._store._appended.notify_all()

    @property
    def position(self) -> int:
        """The position the next event will be read from."""
        return self._position

    def __iter__(self) -> Iterator[RecordedEvent]:
        store = self._store
        while not self._stopped.is_set() and not store.closed:
            seen = store._append_count
            try:
                page = store.read_page(self._position, store._page_size)
            except StoreUnavailable:
                if store.closed:
                    return
                raise
            for event in page:
                if self._stopped.is_set():
                    return
                self._position = event.position + 1
                yield event
            if len(page) < store._page_size:
                with store._appended:
                    if store._append_count == seen and not self._stopped.is_set() and not store.closed:
                        store._appended.wait(self._poll_interval)


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
