"""SQLite store: what survives closing, other processes and a kill mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from events.sqlite.store import SQLiteEventStore
from events.store import StoreUnavailable, StreamAppend, StreamState, WrongExpectedVersion
from tests.events.contract import assert_chain_intact, new_events

ANY = StreamState.ANY
REPO = Path(__file__).resolve().parents[3]


def test_reopen__events_versions_and_chain_survive_close(tmp_path):
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as store:
        written = store.append("customer-anna", new_events(3), expected_version=ANY).outcomes

    with SQLiteEventStore(path) as reopened:
        assert [e.event_id for e in reopened.read_all()] == [o.event_id for o in written]
        assert reopened.stream_version("customer-anna") == 2
        reopened.append("customer-anna", new_events(1), expected_version=2)
        assert_chain_intact(reopened)


def test_reopen__duplicates_are_still_recognised(tmp_path):
    path = tmp_path / "events.db"
    events = new_events(2)
    with SQLiteEventStore(path) as store:
        original = store.append("customer-anna", events, expected_version=ANY).outcomes

    with SQLiteEventStore(path) as reopened:
        retry = reopened.append("customer-anna", events, expected_version=ANY).outcomes

    assert [(o.duplicate, o.position) for o in retry] == [(True, o.position) for o in original]


def test_second_writer__its_appends_are_seen_by_the_first(tmp_path):
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as first, SQLiteEventStore(path) as second:
        first.append("customer-anna", new_events(1), expected_version=StreamState.NO_STREAM)
        second.append("customer-anna", new_events(2), expected_version=0)
        shared = new_events(1)
        second.append("customer-ben", shared, expected_version=ANY)

        after = first.append("customer-anna", new_events(1), expected_version=2)
        retry = first.append("customer-ben", shared, expected_version=ANY)

        assert after.current_version == 3
        assert retry.outcomes[0].duplicate
        assert first.head_position() == second.head_position() == 5
        assert_chain_intact(first)


def test_second_writer__stale_version_in_the_first_is_a_conflict_not_a_fork(tmp_path):
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as first, SQLiteEventStore(path) as second:
        first.append("customer-anna", new_events(1), expected_version=ANY)
        second.append("customer-anna", new_events(1), expected_version=0)

        with pytest.raises(WrongExpectedVersion):
            first.append("customer-anna", new_events(1), expected_version=0)

        assert [e.stream_version for e in first.read_stream("customer-anna")] == [0, 1]


_BIG_BATCH_WRITER = textwrap.dedent(
    """
    import sys, uuid
    from datetime import datetime, timezone
    from events.sqlite.store import SQLiteEventStore
    from events.store import NewEvent, StreamAppend

    path, count = sys.argv[1], int(sys.argv[2])
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    body = b'{"channel":"web","data":{"url":"https://shop.example.com/' + b'x' * 200 + b'"}}'
    appends = [
        StreamAppend(f"customer-{n % 5000}", [NewEvent(uuid.uuid4(), "page_viewed", 1, at, body)])
        for n in range(count)
    ]
    store = SQLiteEventStore(path, cache_mib=1)  # a small cache spills the open transaction to the WAL
    print("appending", flush=True)
    store.append_batch(appends)
    print("committed", flush=True)
    """
)


def test_killed_mid_batch__leaves_all_or_nothing_of_it(tmp_path):
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as store:
        before = store.append("customer-anna", new_events(3), expected_version=ANY).outcomes
    wal = Path(f"{path}-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0
    batch = 150_000
    writer = subprocess.Popen(
        [sys.executable, "-c", _BIG_BATCH_WRITER, str(path), str(batch)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "appending"
    deadline = time.monotonic() + 60
    while (wal.stat().st_size if wal.exists() else 0) < wal_before + 4 * 1024 * 1024:
        assert writer.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.002)

    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()

    with SQLiteEventStore(path) as store:
        count = store.count()
        assert count in (len(before), len(before) + batch)
        assert [e.event_id for e in store.read_stream("customer-anna")] == [o.event_id for o in before]
        store.append("customer-anna", new_events(1), expected_version=2)
        assert_chain_intact(store)


def test_long_write_transaction__readers_are_not_blocked(tmp_path):
    path = tmp_path / "events.db"
    with SQLiteEventStore(path, busy_timeout=0.2) as store:
        written = store.append("customer-anna", new_events(2), expected_version=ANY).outcomes
        blocker = _hold_write_lock(path)
        try:
            assert [e.event_id for e in store.read_all()] == [o.event_id for o in written]
            assert store.stream_version("customer-anna") == 1
            assert store.head_position() == written[-1].position
            assert store.count() == 2
        finally:
            blocker.close()


def test_long_write_transaction__a_writer_waits_then_reports_the_lock(tmp_path):
    path = tmp_path / "events.db"
    with SQLiteEventStore(path, busy_timeout=0.2) as store:
        blocker = _hold_write_lock(path)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as error:
                store.append("customer-anna", new_events(1), expected_version=ANY)
            waited = time.monotonic() - started
        finally:
            blocker.close()  # closing rolls its transaction back

        assert "locked" in str(error.value) and str(path) in str(error.value)
        assert waited >= 0.15
        assert store.append("customer-anna", new_events(1), expected_version=ANY).current_version == 0


def test_concurrent_readers__never_see_half_a_batch(tmp_path):
    path = tmp_path / "events.db"
    per_batch, batches = 50, 40
    seen_counts: list[int] = []
    with SQLiteEventStore(path, page_size=64) as store:
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                seen_counts.append(sum(1 for _ in store.read_all()))

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for thread in readers:
            thread.start()
        for n in range(batches):
            store.append_batch([StreamAppend(f"customer-{n}-{k}", new_events(1)) for k in range(per_batch)])
        done.set()
        for thread in readers:
            thread.join()

    assert seen_counts and all(count % per_batch == 0 for count in seen_counts)


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's writer in the middle of a transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO streams(name) VALUES ('customer-blocker')")
    return conn
