"""``SQLiteEventStore.read_raw``: the log as raw pages for the audit's full scans, a declared
capability of the port (``events.raw.RawReader``); ``events.raw.read_raw`` gives the
same rows from any store through ``read_all``."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from events.raw import RAW_COLUMNS, RawReader, read_raw
from events.sqlite.store import SQLiteEventStore
from events.times import to_micros
from events.store import NewEvent, StreamAppend, StreamState
from tests.consumers.helpers import PortOnly

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


@pytest.mark.parametrize("start", [0, 9, 20])
def test_read_raw__from_any_position_names_exactly_the_streams_of_the_rows_read(store, start):
    # given 25 events over 7 streams, when the log is read from `start` in pages of 3
    seen: set[int] = set()
    for page, names in store.read_raw(start, page_size=3):
        seen |= {row[1] for row in page}

        # then every row's stream is named as stored
        assert all(names[row[1]] == f"anonymous-a{(row[0] - 1) % 7}" for row in page)


def test_read_raw__a_tail_read_loads_the_names_of_its_own_streams_only(tmp_path):
    # given 100 streams of one event each
    with SQLiteEventStore(tmp_path / "many.db") as store:
        store.append_batch([StreamAppend(f"anonymous-s{n}", [new_event(n)], StreamState.ANY) for n in range(100)])

        # when the last 10 events are read (a live tail: what the relay does)
        pages = list(store.read_raw(91, page_size=5))

    # then the names held are those 10 streams', not the 90 before them
    streams = {row[1] for page, _ in pages for row in page}
    assert len(streams) == 10
    assert set(pages[-1][1]) == streams


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



def test_read_raw__is_a_capability_the_sqlite_store_declares_and_the_port_alone_lacks(store):
    assert isinstance(store, RawReader)
    assert not isinstance(PortOnly(store), RawReader)


def named(pages) -> list[tuple]:
    """Rows with the stream name in place of the store's stream id."""
    return [(row[0], names[row[1]], *row[2:]) for page, names in pages for row in page]


@pytest.mark.parametrize("columns", [RAW_COLUMNS, ("position", "stream_id", "type", "recorded_at", "data")])
def test_read_raw_through_the_port__gives_the_rows_the_store_reads_natively(store, columns):
    through_port = list(read_raw(PortOnly(store), 3, page_size=10, columns=columns))

    assert [len(page) for page, _ in through_port] == [10, 10, 3]
    assert named(through_port) == named(store.read_raw(3, page_size=10, columns=columns))


def test_read_raw_through_the_port__refuses_what_the_store_refuses(store):
    with pytest.raises(ValueError, match="columns"):
        next(read_raw(PortOnly(store), 0, columns=("position", "data")))
    with pytest.raises(ValueError, match="page_size"):
        next(read_raw(PortOnly(store), 0, page_size=0))
