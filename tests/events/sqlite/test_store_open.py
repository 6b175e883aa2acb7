"""Opening the SQLite store: URLs, folders, bad paths, foreign files, the factory."""

from __future__ import annotations

import sqlite3

import pytest

import events.kurrentdb.store
from events.factory import open_store
from events.sqlite.store import SCHEMA_VERSION, SQLiteEventStore, path_from_url
from events.store import StoreUnavailable, StreamState
from tests.events.contract import new_events


def test_url__relative_absolute_and_memory_paths():
    assert path_from_url("sqlite:///data/events.db") == "data/events.db"
    assert path_from_url("sqlite:////var/lib/touchpoints/events.db") == "/var/lib/touchpoints/events.db"
    assert path_from_url("sqlite:///:memory:") == ":memory:"


def test_url__without_a_path_is_refused():
    with pytest.raises(ValueError, match="without a path"):
        path_from_url("sqlite:///")


def test_open__creates_the_missing_folder(tmp_path):
    path = tmp_path / "deep" / "er" / "events.db"

    with SQLiteEventStore.open(f"sqlite:///{path}") as store:
        store.append("customer-anna", new_events(1), expected_version=StreamState.ANY)

    assert path.is_file()


def test_open__folder_under_a_file_names_the_path(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    path = blocker / "events.db"

    with pytest.raises(StoreUnavailable, match=str(path)):
        SQLiteEventStore(path)


def test_open__a_directory_is_not_a_database(tmp_path):
    with pytest.raises(StoreUnavailable, match="directory"):
        SQLiteEventStore(tmp_path)


def test_open__a_file_that_is_not_sqlite_names_the_path(tmp_path):
    path = tmp_path / "events.db"
    path.write_bytes(b"this is a text file, not a database\n" * 200)

    with pytest.raises(StoreUnavailable, match=str(path)):
        SQLiteEventStore(path)


def test_open__a_store_written_by_newer_code_is_refused(tmp_path):
    path = tmp_path / "events.db"
    SQLiteEventStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")

    with pytest.raises(StoreUnavailable, match="schema version"):
        SQLiteEventStore(path)


def test_open__durable_settings_are_in_force(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        writer = store._writer.conn  # synchronous is per connection: ask the store's own writer
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_closed_store__refuses_work_with_a_clear_error(tmp_path):
    store = SQLiteEventStore(tmp_path / "events.db")
    store.close()

    with pytest.raises(StoreUnavailable, match="closed"):
        store.append("customer-anna", new_events(1), expected_version=StreamState.ANY)
    with pytest.raises(StoreUnavailable, match="closed"):
        store.head_position()


def test_factory__sqlite_url_opens_the_sqlite_store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        assert isinstance(store, SQLiteEventStore)
        assert store.path == str(tmp_path / "events.db")
    finally:
        store.close()


@pytest.mark.parametrize(
    "url",
    ["esdb://localhost:2113?tls=false", "esdb+discover://cluster", "kurrentdb://db:2113", "kurrentdb+discover://c"],
)
def test_factory__kurrentdb_urls_go_to_the_kurrentdb_adapter(url, monkeypatch):
    # The KurrentDB server is a boundary that cannot run here: record the hand-over instead.
    opened = []
    monkeypatch.setattr(events.kurrentdb.store.KurrentDBEventStore, "open", classmethod(lambda cls, u: opened.append(u)))

    open_store(url)

    assert opened == [url]


@pytest.mark.parametrize("url", ["postgres://db/events", "events.db", "sqlite:/relative.db", ""])
def test_factory__unknown_url_names_it_and_the_accepted_schemes(url):
    with pytest.raises(ValueError) as error:
        open_store(url)

    assert repr(url) in str(error.value)
    assert "sqlite://" in str(error.value) and "esdb://" in str(error.value)
