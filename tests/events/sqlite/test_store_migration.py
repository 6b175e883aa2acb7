"""Opening a schema-version-1 file (ids indexed in SQLite): upgraded in place, still read."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from application.verify import verify_log
from events.encoded import encode_events
from events.factory import open_existing_store
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from events.store import StreamState
from tests.events.contract import assert_chain_intact, new_events, wire_event

ANY = StreamState.ANY

# The DDL of schema version 1, as released.
V1_SCHEMA = """
CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE events (
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
CREATE INDEX events_by_id_key ON events(id_key);
CREATE UNIQUE INDEX events_by_stream ON events(stream_id, stream_version);
PRAGMA user_version = 1;
"""


@pytest.fixture
def v1_file(tmp_path):
    """A version-1 file holding three chained events (rows written by the current store,
    which writes the same columns, copied into a file made by the old DDL)."""
    source, path = tmp_path / "source.db", tmp_path / "v1.db"
    with SQLiteEventStore(source) as store:
        store.append("customer-anna", new_events(2), expected_version=ANY)
        store.append("customer-ben", new_events(1), expected_version=ANY)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(V1_SCHEMA)
    conn.execute("ATTACH DATABASE ? AS source", (str(source),))
    conn.execute("INSERT INTO streams SELECT * FROM source.streams")
    conn.execute("INSERT INTO events SELECT * FROM source.events")
    conn.execute("DETACH DATABASE source")
    conn.close()
    return path


def schema_of(path) -> tuple[int, set[str]]:
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        return conn.execute("PRAGMA user_version").fetchone()[0], names


def test_migration__opening_a_v1_file_drops_the_id_index_and_adds_the_snapshot_table(v1_file):
    # given a version-1 file
    assert schema_of(v1_file) == (1, {"streams", "events", "events_by_id_key", "events_by_stream",
                                      "sqlite_autoindex_streams_1"})

    # when a store object opens it
    SQLiteEventStore(v1_file).close()

    # then it is version 2: no id index, a snapshot table, the rest as it was
    version, names = schema_of(v1_file)
    assert version == 2
    assert "events_by_id_key" not in names
    assert {"id_snapshot", "events_by_stream", "events", "streams"} <= names


def test_migration__the_upgraded_log_reads_and_continues_its_streams_and_chain(v1_file):
    # given a version-1 file with three events
    with SQLiteEventStore(v1_file) as store:
        # when it is read and appended to
        original = list(store.read_all())
        more = store.append("customer-ben", new_events(1), expected_version=0)

        # then the old events are there and the new one continues the stream and the chain
        assert [(e.stream, e.stream_version) for e in original] == [
            ("customer-anna", 0), ("customer-anna", 1), ("customer-ben", 0)]
        assert (more.outcomes[0].position, more.outcomes[0].stream_version) == (4, 1)
        assert_chain_intact(store)


def test_migration__stored_v1_events_are_recognised_as_duplicates(v1_file):
    # given the rows of a version-1 file
    with sqlite3.connect(v1_file) as conn:
        stored = conn.execute("SELECT event_id, position FROM events ORDER BY position").fetchall()

    # when an event with a stored id is appended after the upgrade
    with SQLiteEventStore(v1_file) as store:
        event_id = stored[1][0]
        model = REGISTRY.validate(wire_event(customer="anna", event_id=uuid.UUID(bytes=event_id)))
        outcomes = store.append_encoded(encode_events([model]))

        # then it is a duplicate at its original position
        assert (outcomes.positions, outcomes.duplicates) == ([stored[1][1]], [True])
        assert store.count() == 3


def test_migration__a_read_only_command_opening_a_v1_file_reads_it(v1_file):
    # given a version-1 file
    # when a read-only command opens it (views, replay, verify)
    store = open_existing_store(f"sqlite:///{v1_file}")
    try:
        report = verify_log(store)

        # then it reads the whole log and verifies it
        assert report.ok and report.events == 3
        assert [e.stream_version for e in store.read_stream("customer-anna")] == [0, 1]
    finally:
        store.close()
