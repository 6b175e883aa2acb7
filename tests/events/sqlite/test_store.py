"""The SQLite adapter against the store contract: on a file, and in memory."""

from __future__ import annotations

import pytest

from events.sqlite.store import SQLiteEventStore
from tests.events.contract import EventStoreContract


class TestSQLiteEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        with SQLiteEventStore(tmp_path / "events.db") as store:
            yield store


class TestInMemorySQLiteEventStore(EventStoreContract):
    @pytest.fixture
    def store(self):
        with SQLiteEventStore.open("sqlite:///:memory:") as store:
            yield store
