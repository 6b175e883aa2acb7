"""The relay's checkpoint file: saved durably, read back exactly, one per topic."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import datetime, timezone

from streams.checkpoint import Checkpoint, SqliteCheckpointStore


def test_no_checkpoint_saved__loads_as_the_start_of_the_log(tmp_path):
    with SqliteCheckpointStore(tmp_path / "relay.db") as checkpoints:
        loaded = checkpoints.load("touchpoints.events")

    assert loaded == Checkpoint()


def test_saved_checkpoint__reads_back_from_a_reopened_file(tmp_path):
    with SqliteCheckpointStore(tmp_path / "relay.db") as checkpoints:
        before = datetime.now(timezone.utc)
        checkpoints.save("touchpoints.events", Checkpoint(position=42, offsets={0: 7, 2: 3}, topic_id="t-1",
                                                          positions={0: 40, 2: 42}))
        after = datetime.now(timezone.utc)

    with SqliteCheckpointStore(tmp_path / "relay.db") as reopened:
        loaded = reopened.load("touchpoints.events")

    assert (loaded.position, loaded.offsets, loaded.topic_id) == (42, {0: 7, 2: 3}, "t-1")
    assert loaded.positions == {0: 40, 2: 42}
    assert before <= loaded.updated_at <= after


def test_saved_checkpoint__keeps_the_time_it_was_given(tmp_path):
    stamped = datetime(2025, 3, 1, 12, 30, tzinfo=timezone.utc)
    with SqliteCheckpointStore(tmp_path / "relay.db") as checkpoints:
        checkpoints.save("touchpoints.events", Checkpoint(position=1, updated_at=stamped))

        assert checkpoints.load("touchpoints.events").updated_at == stamped


def test_checkpoint_saved_by_a_process_killed_right_after__survives(tmp_path):
    script = (
        "import os, signal\n"
        "from streams.checkpoint import Checkpoint, SqliteCheckpointStore\n"
        f"store = SqliteCheckpointStore({str(tmp_path / 'relay.db')!r})\n"
        "store.save('touchpoints.events', Checkpoint(position=9, offsets={1: 4}))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )

    finished = subprocess.run([sys.executable, "-c", script], capture_output=True)

    assert finished.returncode == -9
    with SqliteCheckpointStore(tmp_path / "relay.db") as checkpoints:
        assert checkpoints.load("touchpoints.events").position == 9


def test_checkpoints_of_two_topics__are_kept_apart(tmp_path):
    with SqliteCheckpointStore(tmp_path / "relay.db") as checkpoints:
        checkpoints.save("a", Checkpoint(position=1))
        checkpoints.save("b", Checkpoint(position=2))
        checkpoints.save("a", Checkpoint(position=3))

        assert (checkpoints.load("a").position, checkpoints.load("b").position) == (3, 2)


def test_reset__forgets_the_checkpoint(tmp_path):
    with SqliteCheckpointStore(tmp_path / "relay.db") as checkpoints:
        checkpoints.save("touchpoints.events", Checkpoint(position=5, offsets={0: 1}))

        checkpoints.reset("touchpoints.events")

        assert checkpoints.load("touchpoints.events") == Checkpoint()


def test_relay_db_of_an_earlier_version__loads_with_no_positions_known_and_saves_them_after(tmp_path):
    # given a relay.db written before the checkpoint kept each partition's last position
    with sqlite3.connect(tmp_path / "relay.db") as db:
        db.execute("CREATE TABLE relay_checkpoint (name TEXT PRIMARY KEY, position INTEGER, offsets TEXT NOT NULL,"
                   " topic_id TEXT, updated_at TEXT NOT NULL)")
        db.execute("INSERT INTO relay_checkpoint VALUES ('touchpoints.events', 9, '{\"1\": 4}', 't-1',"
                   " '2026-12-01T00:00:00+00:00')")

    # when it is opened and read, then a checkpoint with positions is saved
    with SqliteCheckpointStore(tmp_path / "relay.db") as checkpoints:
        loaded = checkpoints.load("touchpoints.events")
        checkpoints.save("touchpoints.events", Checkpoint(position=12, offsets={1: 4}, positions={1: 12}))
        saved = checkpoints.load("touchpoints.events")

    # then what it held is read back with no positions (a readiness check falls back on the lags)
    assert (loaded.position, loaded.offsets, loaded.topic_id, loaded.positions) == (9, {1: 4}, "t-1", {})
    assert (saved.position, saved.positions) == (12, {1: 12})
