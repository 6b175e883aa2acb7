"""``SQLiteEventStore.read_raw``: the log as raw pages for the audit's full scans."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from events.sqlite.store import SQLiteEventStore
from events.sqlite.batch import to_micros
from events.store import NewEvent, StreamAppend, StreamState

AT = datetime(2024, 3, 1, 12, tzinfo=timezone.utc)


def new_event(n: int) -> NewEvent:
    return NewEvent(uuid.uuid4(), "page_viewed", 1, AT, f'{{"n":{n}}}'.encode())


@pytest.fixture
def store(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as opened:
        opened.append_batch([StreamAppend(f"anonymous-a{n % 7}", [new_event(n)], StreamState.ANY) for n in range(25)])
        yield opened


def test_read_raw__pages_hold_every_row_as_stored_in_position_order(store):
    pages = list(store.read_raw(0, page_size=10))

    rows = [row for page, _ in pages for row in page]
    assert [len(page) for page, _ in pages] == [10, 10, 5]
    assert [row[0] for row in rows] == list(range(1, 26))
    recorded = list(store.read_all())
    assert [(r[3], r[6], r[8], r[10]) for r in rows] == [
        (e.event_id.bytes, to_micros(e.occurred_at), e.data, e.hash) for e in recorded]


def test_read_raw__names_the_stream_of_every_row_yielded(store):
    for page, names in store.read_raw(0, page_size=4):
        assert all(names[row[1]].startswith("anonymous-a") for row in page)


def test_read_raw__reads_only_the_columns_asked_for_from_a_position(store):
    page, names = next(store.read_raw(20, columns=("position", "stream_id", "data")))

    assert [row[0] for row in page] == [20, 21, 22, 23, 24, 25]
    assert all(len(row) == 3 for row in page)


@pytest.mark.parametrize("columns", [("stream_id", "position"), ("position", "data"), ("position", "stream_id", "x")])
def test_read_raw__refuses_columns_it_cannot_page_by(store, columns):
    with pytest.raises(ValueError, match="columns"):
        next(store.read_raw(0, columns=columns))


def test_read_raw__refuses_a_page_size_below_one(store):
    with pytest.raises(ValueError, match="page_size"):
        next(store.read_raw(0, page_size=0))

