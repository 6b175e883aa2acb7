"""The physical floor of an append-only log on this disk, and the SQLite store beside it.

``measure_floor`` appends prepared rows with plain ``sqlite3`` ``executemany`` in
batches to a bare table with only an integer primary key, on a fresh file, under
the same PRAGMAs as the store's writer (WAL, ``synchronous=FULL``, cache,
checkpointing) and in the same batch size. ``measure_store`` pushes the same
events through ``SQLiteEventStore.append_batch``. ``bench/ingest.py`` builds its
table on these; ``python -m bench ingest_floor`` prints the two for uuid4 and
time-ordered (uuid7-style) event ids.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

from bench.common import Row
from events.registry import REGISTRY, encode_body
from events.sqlite import SQLiteEventStore, writer_pragmas
from events.sqlite_batch import to_micros
from events.store import NewEvent, StreamAppend, StreamState

StreamedEvent = tuple[str, NewEvent]  # (stream, event), as the store receives it
DEFAULT_BATCH = 1000
FULL_SIZE = 200_000


def measure_floor(rows: Sequence[tuple], path: str | os.PathLike[str], *, batch_size: int = DEFAULT_BATCH) -> float:
    """Rows/s of plain ``executemany`` into ``events(position INTEGER PRIMARY KEY, c1..cN)``."""
    _remove_database(path)
    width = len(rows[0]) if rows else 1
    columns = ", ".join(f"c{i}" for i in range(1, width + 1))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in writer_pragmas():
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(f"CREATE TABLE events(position INTEGER PRIMARY KEY, {columns})")
        insert = f"INSERT INTO events({columns}) VALUES ({', '.join('?' * width)})"
        started = time.perf_counter()
        for start in range(0, len(rows), batch_size):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows[start : start + batch_size])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return len(rows) / elapsed


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
    _remove_database(path)
    batches = [group_by_stream(events[start : start + batch_size]) for start in range(0, len(events), batch_size)]
    with SQLiteEventStore(path) as store:
        started = time.perf_counter()
        if threads == 1:
            for batch in batches:
                store.append_batch(batch)
        else:
            with ThreadPoolExecutor(threads) as pool:
                for _ in pool.map(store.append_batch, batches):
                    pass
        elapsed = time.perf_counter() - started
    return len(events) / elapsed


def group_by_stream(events: Sequence[StreamedEvent]) -> list[StreamAppend]:
    by_stream: dict[str, list[NewEvent]] = {}
    for stream, event in events:
        by_stream.setdefault(stream, []).append(event)
    return [StreamAppend(stream, batch, StreamState.ANY) for stream, batch in by_stream.items()]


def floor_rows(events: Sequence[StreamedEvent]) -> list[tuple]:
    """The rows the store writes for these events, as plain tuples (a 32-byte hash included)."""
    recorded = to_micros(datetime.now(timezone.utc))
    return [
        (
            stream,
            e.event_id.bytes,
            e.type,
            e.schema_version,
            to_micros(e.occurred_at),
            recorded,
            e.data,
            e.metadata,
            hashlib.sha256(e.data).digest(),
        )
        for stream, e in events
    ]


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
        event = REGISTRY.validate(body)
        stored = NewEvent(event.event_id, event.type, event.SCHEMA_VERSION, event.occurred_at, encode_body(event))
        events.append((event.stream, stored))
    return events


CASES = [(DEFAULT_BATCH, 1), (DEFAULT_BATCH, 2), (10_000, 1)]  # (events per call, calling threads)
REPEATS = 2  # best of: other work on a shared machine only ever slows a run down


def run(scale: float) -> list[Row]:
    count = max(1000, int(FULL_SIZE * scale))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as folder:
        for ids in ("uuid4", "uuid7"):
            events = synthetic_events(count, ids=ids)
            prepared = floor_rows(events)
            for batch_size, threads in CASES:
                floor = store = 0.0
                for _ in range(REPEATS):  # interleaved, so both see the same machine
                    floor = max(floor, measure_floor(prepared, Path(folder) / "floor.db", batch_size=batch_size))
                    store = max(
                        store,
                        measure_store(events, Path(folder) / "store.db", batch_size=batch_size, threads=threads),
                    )
                rows.append(
                    Row(
                        "ingest_floor",
                        f"store append_batch, {count:,} events, {ids} ids, {batch_size}/call, {threads} thread(s)",
                        store,
                        "events/s",
                        "raw sqlite3 floor",
                        floor,
                        ">= 0.5x",
                        store >= 0.5 * floor,
                    )
                )
    return rows


def _remove_database(path: str | os.PathLike[str]) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    from bench.common import format_table

    print(format_table(run(float(os.environ.get("BENCH_SCALE", "1.0")))))
