"""The physical floor of the store's append on this disk, and the SQLite store beside it.

``measure_floor`` writes, with plain ``sqlite3`` ``executemany``, the rows the store's
writer writes for the same events, prepared beforehand (``floor_rows``): ``events`` rows
under the store's own schema (``events.sqlite.store``: the table and its UNIQUE
``(stream_id, stream_version)`` index that reading a stream and optimistic concurrency
need) by the writer's own INSERT, and a ``streams`` row for each stream first seen; on a
fresh file, under the writer's PRAGMAs (``writer_pragmas``: WAL, ``synchronous=FULL``,
cache, checkpointing), one ``BEGIN IMMEDIATE``/``COMMIT`` per batch of the same size as
the path it is compared with. What it leaves out is what the store adds on top: planning
(duplicates, versions, positions), the hash chain, the id index. ``measure_bare_floor`` is
the earlier, lower bar, kept as information: the same values into a bare table with only
an integer primary key. ``measure_store`` pushes the same events through
``SQLiteEventStore.append_batch``, ``measure_encoded`` through ``append_encoded`` (batches
encoded beforehand by ``events.encoded.encode_events``, as the ingest workers hand them to
the writer). ``bench/ingest.py`` builds its table on these; ``python -m bench.ingest_floor``
prints them for uuid4 and time-ordered (uuid7-style) event ids. ``BENCH_PROFILE=1`` adds
where append_encoded's time goes.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

from bench.common import Row
from events.encoded import EncodedBatch, encode_events
from events.models import Event
from events.registry import REGISTRY, encode_body
from events.sqlite.batch import NO_VERSION, id_key
from events.sqlite.store import _SCHEMA as STORE_SCHEMA  # the floor writes into the store's own tables
from events.sqlite.store import SQLiteEventStore, writer_pragmas
from events.sqlite.writer import INSERT_EVENT
from events.times import to_micros
from events.store import NewEvent, StreamAppend, StreamState

StreamedEvent = tuple[str, NewEvent]  # (stream, event), as the store receives it
DEFAULT_BATCH = 1000
FULL_SIZE = 200_000


@dataclass(frozen=True)
class FloorRows:
    """What the store's writer inserts for a list of events, prepared: ``events`` rows in
    log order (``INSERT_EVENT``'s columns) and, beside each, the ``streams`` row ``(id,
    name)`` it creates (None when its stream was seen before)."""

    events: list[tuple]
    new_streams: list[tuple[int, str] | None]

    def __len__(self) -> int:
        return len(self.events)


def floor_rows(events: Sequence[StreamedEvent]) -> FloorRows:
    """The rows the store writes for these events, as plain tuples: stream ids and
    versions numbered as the writer numbers them, a 32-byte hash (a stand-in for the
    chain's, same size) and one ``recorded_at`` for all."""
    recorded = to_micros(datetime.now(timezone.utc))
    stream_ids: dict[str, int] = {}
    versions: dict[str, int] = {}
    rows: list[tuple] = []
    new_streams: list[tuple[int, str] | None] = []
    for position, (stream, e) in enumerate(events, start=1):
        stream_id = stream_ids.get(stream)
        if stream_id is None:
            stream_id = stream_ids[stream] = len(stream_ids) + 1
            new_streams.append((stream_id, stream))
        else:
            new_streams.append(None)
        version = versions[stream] = versions.get(stream, NO_VERSION) + 1
        event_id = e.event_id.bytes
        rows.append((
            position, stream_id, version, event_id, id_key(event_id), e.type, e.schema_version,
            to_micros(e.occurred_at), recorded, e.data, e.metadata, hashlib.sha256(e.data).digest(),
        ))
    return FloorRows(rows, new_streams)


def measure_floor(rows: FloorRows, path: str | os.PathLike[str], *, batch_size: int = DEFAULT_BATCH) -> float:
    """Rows/s of plain ``executemany`` of the store's rows into the store's schema (its
    indexes included), one transaction per ``batch_size`` events."""
    def write(conn: sqlite3.Connection) -> None:
        events, new_streams = rows.events, rows.new_streams
        for start in range(0, len(events), batch_size):
            conn.execute("BEGIN IMMEDIATE")
            created = [row for row in new_streams[start : start + batch_size] if row is not None]
            if created:
                conn.executemany("INSERT INTO streams(id, name) VALUES (?, ?)", created)
            conn.executemany(INSERT_EVENT, events[start : start + batch_size])
            conn.execute("COMMIT")

    return len(rows) / _timed_writes(path, STORE_SCHEMA, write)


def measure_bare_floor(
    rows: FloorRows, path: str | os.PathLike[str], *, batch_size: int = DEFAULT_BATCH
) -> float:
    """Rows/s of plain ``executemany`` of the same event values (the stream's name in place
    of its id and version, no id_key) into a bare table with only an integer primary key:
    the bar before issue 15."""
    bare = [(name, row[3], *row[5:]) for row, name in zip(rows.events, _stream_names(rows))]
    width = len(bare[0]) if bare else 1
    columns = ", ".join(f"c{i}" for i in range(1, width + 1))
    insert = f"INSERT INTO events({columns}) VALUES ({', '.join('?' * width)})"

    def write(conn: sqlite3.Connection) -> None:
        for start in range(0, len(bare), batch_size):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, bare[start : start + batch_size])
            conn.execute("COMMIT")

    return len(bare) / _timed_writes(path, f"CREATE TABLE events(position INTEGER PRIMARY KEY, {columns})", write)


def _stream_names(rows: FloorRows) -> list[str]:
    names: dict[int, str] = {}
    for created in rows.new_streams:
        if created is not None:
            names[created[0]] = created[1]
    return [names[row[1]] for row in rows.events]


def _timed_writes(path: str | os.PathLike[str], schema: str, write: Callable[[sqlite3.Connection], None]) -> float:
    """Seconds ``write`` takes on a fresh file with ``schema``, under the writer's PRAGMAs."""
    _remove_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in writer_pragmas():
            conn.execute(f"PRAGMA {pragma}")
        conn.executescript(schema)
        started = time.perf_counter()
        write(conn)
        return time.perf_counter() - started
    finally:
        conn.close()


def measure_store(
    events: Sequence[StreamedEvent],
    path: str | os.PathLike[str],
    *,
    batch_size: int = DEFAULT_BATCH,
    threads: int = 1,
) -> float:
    """Events/s through ``SQLiteEventStore.append_batch`` on a fresh file, ``batch_size``
    events per call, grouped by stream (order kept) with ``StreamState.ANY``. With
    ``threads`` > 1 the calls come from a pool, as from the HTTP server's workers: one
    call prepares its batch while another is being written (group commit)."""
    batches = [group_by_stream(events[start : start + batch_size]) for start in range(0, len(events), batch_size)]
    return len(events) / _seconds_for_calls("append_batch", batches, path, threads)


def measure_encoded(
    batches: Sequence[EncodedBatch], path: str | os.PathLike[str], *, threads: int = 1
) -> float:
    """Events/s through ``SQLiteEventStore.append_encoded`` on a fresh file, one call per
    (already encoded) batch; ``threads`` as in ``measure_store``."""
    return sum(len(batch) for batch in batches) / _seconds_for_calls("append_encoded", batches, path, threads)


def _seconds_for_calls(method: str, batches: Sequence, path: str | os.PathLike[str], threads: int) -> float:
    """Seconds to pass every batch to ``method`` of a store on a fresh file, from one thread
    or from a pool of ``threads``."""
    _remove_database(path)
    with SQLiteEventStore(path) as store:
        call = getattr(store, method)
        started = time.perf_counter()
        if threads == 1:
            for batch in batches:
                call(batch)
        else:
            with ThreadPoolExecutor(threads) as pool:
                for _ in pool.map(call, batches):
                    pass
        return time.perf_counter() - started


def encoded_batches(models: Sequence[Event], batch_size: int) -> list[EncodedBatch]:
    return [encode_events(models[start : start + batch_size]) for start in range(0, len(models), batch_size)]


def group_by_stream(events: Sequence[StreamedEvent]) -> list[StreamAppend]:
    by_stream: dict[str, list[NewEvent]] = {}
    for stream, event in events:
        by_stream.setdefault(stream, []).append(event)
    return [StreamAppend(stream, batch, StreamState.ANY) for stream, batch in by_stream.items()]


def uuid7_like(millis: int, rng: random.Random) -> UUID:
    """A time-ordered id laid out as RFC 9562 UUIDv7 (48-bit milliseconds first)."""
    rand = rng.getrandbits(74)
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return UUID(int=value)


_CHANNELS = ["instagram", "facebook", "tiktok", "google_ads", "email", "organic_search", "direct", "store"]


def synthetic_events(
    count: int, *, ids: str = "uuid4", customers: int | None = None, seed: int = 7
) -> list[StreamedEvent]:
    """``count`` validated page views and orders of ``customers`` people over three
    years, interleaved in time order, with uuid4 or uuid7-style event ids."""
    return [as_stored(event) for event in synthetic_models(count, ids=ids, customers=customers, seed=seed)]


def as_stored(event: Event) -> StreamedEvent:
    body = encode_body(event)
    return event.stream, NewEvent(event.event_id, event.type, event.SCHEMA_VERSION, event.occurred_at, body)


def synthetic_models(
    count: int, *, ids: str = "uuid4", customers: int | None = None, seed: int = 7
) -> list[Event]:
    """The validated models behind ``synthetic_events``."""
    rng = random.Random(seed)
    customers = customers or max(1, count // 10)
    start = datetime(2022, 1, 1, tzinfo=timezone.utc)
    step = timedelta(days=3 * 365) / max(1, count)
    events = []
    for n in range(count):
        occurred = start + step * n
        millis = int(occurred.timestamp() * 1000)
        event_id = uuid7_like(millis, rng) if ids == "uuid7" else UUID(int=rng.getrandbits(128), version=4)
        who = rng.randrange(customers)
        body: dict = {"event_id": str(event_id), "occurred_at": occurred.isoformat(), "source": "web"}
        body["customer_id" if who % 3 else "anonymous_id"] = f"c{who:07d}" if who % 3 else f"cookie:{who:07d}"
        if n % 20 == 19 and who % 3:
            body.update(type="order_placed", data={"order_id": f"o{n}", "revenue": "49.90", "currency": "EUR"})
        else:
            body.update(
                type="page_viewed",
                channel=rng.choice(_CHANNELS),
                campaign=f"campaign-{rng.randrange(40)}",
                data={"url": f"https://shop.example.com/products/{rng.randrange(10_000)}", "title": "Product"},
            )
        events.append(REGISTRY.validate(body))
    return events


CASES = [(DEFAULT_BATCH, 1), (DEFAULT_BATCH, 2), (10_000, 1)]  # (events per call, calling threads)
REPEATS = 3  # best of: other work on a shared machine only ever slows a run down
TARGETS = {"append_batch": 0.5, "append_encoded": 0.6}  # x the store-shaped floor (issue 2, re-based by issue 15)


def run(scale: float) -> list[Row]:
    count = max(1000, int(FULL_SIZE * scale))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as folder:
        for ids in ("uuid4", "uuid7"):
            models = synthetic_models(count, ids=ids)
            events = [as_stored(event) for event in models]
            prepared = floor_rows(events)
            for batch_size, threads in CASES:
                encoded = encoded_batches(models, batch_size)
                floor = bare = store = bulk = 0.0
                for _ in range(REPEATS):  # interleaved, so all four see the same machine
                    floor = max(floor, measure_floor(prepared, Path(folder) / "floor.db", batch_size=batch_size))
                    bare = max(bare, measure_bare_floor(prepared, Path(folder) / "bare.db", batch_size=batch_size))
                    store = max(
                        store,
                        measure_store(events, Path(folder) / "store.db", batch_size=batch_size, threads=threads),
                    )
                    bulk = max(bulk, measure_encoded(encoded, Path(folder) / "store.db", threads=threads))
                case = f"{count:,} events, {ids} ids, {batch_size}/call"
                if threads == 1:
                    rows.append(Row("ingest_floor", f"floor before issue 15: bare table, {case}", bare, "rows/s",
                                    "store-shaped floor", floor))
                for method, rate in (("append_batch", store), ("append_encoded", bulk)):
                    target = TARGETS[method]
                    rows.append(
                        Row(
                            "ingest_floor",
                            f"store {method}, {case}, {threads} thread(s)",
                            rate,
                            "events/s",
                            "store-shaped floor",
                            floor,
                            f">= {target}x",
                            rate >= target * floor,
                        )
                    )
    return rows


class _TimedConnection:
    """The writer's connection, timing each statement by its first word (INSERT by table)."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        self.seconds: dict[str, float] = {}

    def _timed(self, sql: str, run):
        words = sql.split()
        kind = f"insert {words[2].split('(')[0]}" if words[0] == "INSERT" else words[0].lower()
        started = time.perf_counter()
        try:
            return run()
        finally:
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - started

    def execute(self, sql: str, *args):
        return self._timed(sql, lambda: self._conn.execute(sql, *args))

    def executemany(self, sql: str, rows):
        return self._timed(sql, lambda: self._conn.executemany(sql, rows))

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def profile_encoded(batches: Sequence[EncodedBatch], path: str | os.PathLike[str]) -> dict[str, float]:
    """Microseconds per event of ``append_encoded`` (one thread): in total, in SQLite
    statements (by kind; "insert events" includes binding the rows) and in Python."""
    _remove_database(path)
    with SQLiteEventStore(path) as store:
        timed = _TimedConnection(store._writer.conn)
        store._writer.conn = timed  # the writer's statements only; nothing else uses it here
        started = time.perf_counter()
        for batch in batches:
            store.append_encoded(batch)
        elapsed = time.perf_counter() - started
    count = sum(len(batch) for batch in batches)
    split = {kind: seconds * 1e6 / count for kind, seconds in sorted(timed.seconds.items())}
    sqlite_total = sum(split.values())
    return {"total": elapsed * 1e6 / count, "sqlite": sqlite_total, "python": elapsed * 1e6 / count - sqlite_total,
            **split}


def print_profiles(scale: float) -> None:
    count = max(1000, int(FULL_SIZE * scale))
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as folder:
        for ids in ("uuid4", "uuid7"):
            models = synthetic_models(count, ids=ids)
            for batch_size in (DEFAULT_BATCH, 10_000):
                batches = encoded_batches(models, batch_size)
                runs = [profile_encoded(batches, Path(folder) / "profile.db") for _ in range(REPEATS)]
                best = min(runs, key=lambda split: split["total"])
                shown = ", ".join(f"{kind} {micros:.2f}" for kind, micros in best.items())
                print(f"append_encoded {ids} {batch_size}/call, us/event: {shown}")


def _remove_database(path: str | os.PathLike[str]) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    from bench.common import format_table

    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    print(format_table(run(scale)))
    if os.environ.get("BENCH_PROFILE"):
        print_profiles(scale)
