"""SQLite store under faults: a full disk (``PRAGMA max_page_count`` on the writer's
connection of a real file), a file that cannot be written any more (``chattr +i``: even root
is refused). Each append is refused whole with an error naming the cause, and the next one
works once the fault is gone, with the counts and the hash chain intact."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from application.verify import verify_log
from events.sqlite.store import SQLiteEventStore
from events.store import StoreFull, StoreUnavailable, StreamAppend
from tests.events.contract import new_events

NO_LIMIT = 1_073_741_823  # SQLite's largest max_page_count


def many_streams(count: int, prefix: str = "customer") -> list[StreamAppend]:
    return [StreamAppend(f"{prefix}-{n}", new_events(1)) for n in range(count)]


@contextmanager
def disk_full(store: SQLiteEventStore) -> Iterator[None]:
    """The file may not grow: its page count is the most it can have."""
    conn = store._writer.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA max_page_count={NO_LIMIT}")


@contextmanager
def unwritable(*paths: Path) -> Iterator[None]:
    """The files become immutable (``chattr +i``): every write to them fails, even root's."""
    made = []
    try:
        for path in paths:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
                pytest.skip("chattr +i is not permitted here (needs CAP_LINUX_IMMUTABLE and ext2/3/4, xfs or btrfs)")
            made.append(path)
        yield
    finally:
        for path in made:
            subprocess.run(["chattr", "-i", str(path)], check=True)


def test_disk_full__append_refused_as_store_full_and_nothing_of_it_written(tmp_path):
    # given a store holding 100 events whose file may not grow
    with SQLiteEventStore(tmp_path / "events.db") as store:
        store.append_batch(many_streams(100))
        with disk_full(store):
            # when a batch needing more room is appended
            with pytest.raises(StoreFull) as raised:
                store.append_batch(many_streams(3000, prefix="new"))

        # then the error names the cause and nothing of the batch is in the log
        assert "full" in str(raised.value) and str(tmp_path) in str(raised.value)
        assert store.count() == 100
        assert store.stream_version("new-0") is None


def test_disk_full__once_room_is_made_the_same_batch_is_stored_whole_and_the_chain_holds(tmp_path):
    # given a batch refused for want of room
    batch = many_streams(3000, prefix="new")
    with SQLiteEventStore(tmp_path / "events.db") as store:
        store.append_batch(many_streams(100))
        with disk_full(store), pytest.raises(StoreFull):
            store.append_batch(batch)

        # when it is sent again after room was made
        results = store.append_batch(batch)

        # then it is stored whole, once, after the events before it, and the chain verifies
        assert not any(outcome.duplicate for result in results for outcome in result.outcomes)
        assert store.count() == 3100
        report = verify_log(store)
        assert report.ok and report.events == 3100


def test_file_made_unwritable__append_refused_naming_the_file_then_works_again(tmp_path):
    # given a store whose database file and write-ahead log become immutable
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as store:
        store.append_batch(many_streams(10))
        with unwritable(path, Path(f"{path}-wal")):
            # when an append is made
            with pytest.raises(StoreUnavailable) as raised:
                store.append_batch(many_streams(10, prefix="new"))

        # then it was refused whole, naming the store; and once writable the next append works
        assert str(path) in str(raised.value) and "nothing of it was written" in str(raised.value)
        assert store.count() == 10
        store.append_batch(many_streams(10, prefix="new"))
        assert store.count() == 20 and verify_log(store).ok


def test_read_only_file__opening_the_writer_fails_naming_the_file(tmp_path):
    # given a store file (and its folder) nobody may write
    path = tmp_path / "events.db"
    SQLiteEventStore(path).close()
    for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    with unwritable(path, tmp_path) if os.geteuid() == 0 else read_only_mode(path, tmp_path):
        # when a store is opened on it
        with pytest.raises(StoreUnavailable) as raised:
            SQLiteEventStore(path)

    # then the error names the file
    assert str(path) in str(raised.value)


@contextmanager
def read_only_mode(*paths: Path) -> Iterator[None]:
    """Without root, file modes are enough."""
    modes = {path: path.stat().st_mode for path in paths}
    try:
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
