"""bench/replay: the audit replay and verify over a large SQLite log, beside a bare read.

At scale 1.0 the log holds >= 5,000,000 events of the demo generator (realistic
journeys: touches on every channel, identity links arriving late, merges, orders,
refunds, consents), appended through the store in batches. Building it takes several
minutes, so it is cached under ``/tmp/touchpoints-bench-replay/`` keyed by size and
seed (a ``.complete`` marker says the build finished).

In one run, on the same file:

* the baseline: a bare sequential read of the events table -- every row, every
  column, in position order, pages of 20,000 -- that only ``orjson.loads`` each event's
  JSON (the issue's "about 300,000 events/s"). It runs once to warm the page cache,
  then before and after the replay; the faster of the two counts. A narrower read of
  (position, data) only is shown too, without a target;
* the replay: ``application.replay.replay`` over the whole log -- decode through the
  registry, fold every event with ``projections.population.evolve`` -- targets: >= 0.3x
  the baseline, and 5,000,000 events in < 60 s (>= 83,334 events/s);
* the views after it (``projections.views.all_views``, every attribution model): seconds;
* verify: ``application.verify.verify_log``, the whole hash chain recomputed, beside the
  same baseline (no target).
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import orjson

from bench.common import Row, peak_rss_mib

BENCH = "replay"
FULL_EVENTS = 5_000_000
EVENTS_PER_CUSTOMER = 10.4  # a little under what the demo generator averages (~10.5)
SEED = 7
BATCH = 5_000
CACHE = Path("/tmp/touchpoints-bench-replay")
PAGE = 20_000
TARGET_RATIO = 0.3
TARGET_RATE = FULL_EVENTS / 60


def log(message: str) -> None:
    print(f"  [replay] {message}", file=sys.stderr, flush=True)


def run(scale: float) -> list[Row]:
    from application.replay import replay
    from application.replay_report import compute_views
    from application.verify import verify_log
    from events.sqlite.store import SQLiteEventStore

    wanted = max(10_000, int(FULL_EVENTS * scale))
    path = ensure_store(wanted)
    with SQLiteEventStore(path) as store:
        events = store.count()
        bare_read(path)  # warm the page cache
        bare = bare_read(path)
        narrow = bare_read(path, columns="position, data")
        started = time.perf_counter()
        result = replay(store, freeze=True)  # as the replay command runs it
        replay_seconds = time.perf_counter() - started
        started = time.perf_counter()
        compute_views(result.population, result.now)
        views_seconds = time.perf_counter() - started
        del result
        bare = max(bare, bare_read(path))
        started = time.perf_counter()
        report = verify_log(store)
        verify_seconds = time.perf_counter() - started
    assert report.ok and report.events == events, "the bench log does not verify"
    replay_rate, verify_rate = events / replay_seconds, events / verify_seconds
    baseline = "bare read (all columns) + orjson.loads"
    return [
        Row(BENCH, f"bare read of {events:,} events, position + data only", narrow, "events/s", baseline, bare),
        Row(BENCH, f"replay of {events:,} events through every projection", replay_rate, "events/s", baseline, bare,
            f">= {TARGET_RATIO}x", replay_rate >= TARGET_RATIO * bare),
        Row(BENCH, f"replay of {events:,} events: rate for 5M in < 60 s", replay_rate, "events/s",
            target=f">= {TARGET_RATE:,.0f}", ok=replay_rate >= TARGET_RATE),
        Row(BENCH, f"replay of {events:,} events: wall time", replay_seconds, "s"),
        Row(BENCH, "all views after the replay (every attribution model)", views_seconds, "s"),
        Row(BENCH, f"verify of {events:,} events (whole hash chain)", verify_rate, "events/s", baseline, bare),
        Row(BENCH, "peak memory of the bench process", peak_rss_mib(), "MiB"),
    ]


def bare_read(path: Path, columns: str = "*") -> float:
    """Events/s of a sequential read of every row that only decodes each event's JSON."""
    loads = orjson.loads
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        data = conn.execute(f"SELECT {columns} FROM events LIMIT 0").description
        index = [column[0] for column in data].index("data")
        sql = f"SELECT {columns} FROM events WHERE position >= ? ORDER BY position LIMIT ?"
        started = time.perf_counter()
        count, position = 0, 0
        while True:
            rows = conn.execute(sql, (position, PAGE)).fetchall()
            if not rows:
                break
            for row in rows:
                loads(row[index])
            count += len(rows)
            position = rows[-1][0] + 1
        return count / (time.perf_counter() - started)
    finally:
        conn.close()


def ensure_store(events: int) -> Path:
    """A SQLite store of at least ``events`` demo events, built once and cached."""
    customers = int(events / EVENTS_PER_CUSTOMER) + 1
    path = CACHE / f"replay-{customers}-{SEED}.db"
    complete = path.with_suffix(".complete")
    if complete.exists() and path.exists():
        return path
    from application.demo import generate
    from application.ingest import Ingestor
    from events.registry import REGISTRY
    from events.sqlite.store import SQLiteEventStore

    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    log(f"building {path} ({customers:,} demo customers, ~{events:,} events; cached for later runs)")
    started = time.perf_counter()
    validate = REGISTRY.validate
    stored = 0
    with SQLiteEventStore(path) as store:
        ingestor = Ingestor(store)
        batch = []
        for body in generate(customers, SEED):
            batch.append(validate(body))
            if len(batch) >= BATCH:
                stored += len(ingestor.append(batch))
                batch = []
                if stored % 500_000 < BATCH:
                    log(f"{stored:,} events after {time.perf_counter() - started:.0f} s")
        if batch:
            stored += len(ingestor.append(batch))
    complete.write_text(str(stored))
    log(f"built: {stored:,} events in {time.perf_counter() - started:.0f} s")
    return path
