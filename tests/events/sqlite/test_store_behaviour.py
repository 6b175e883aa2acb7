"""SQLite store behaviour beyond the contract: clocks, caches, paging, threads, bad calls."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from events.sqlite.store import SQLiteEventStore
from events.store import NewEvent, StreamAppend, StreamState, WrongExpectedVersion
from tests.events.contract import StepClock, assert_chain_intact, new_event, new_events

ANY = StreamState.ANY
T0 = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)


def test_recorded_at__one_value_per_append_call(tmp_path):
    clock = StepClock(T0)
    with SQLiteEventStore(tmp_path / "events.db", clock=clock) as store:
        store.append_batch([StreamAppend("customer-anna", new_events(2)), StreamAppend("customer-ben", new_events(1))])

        assert {e.recorded_at for e in store.read_all()} == {T0}


def test_recorded_at__a_clock_going_back_does_not_reorder_the_log(tmp_path):
    clock = StepClock(T0)
    with SQLiteEventStore(tmp_path / "events.db", clock=clock) as store:
        store.append("customer-anna", new_events(1), expected_version=ANY)
        clock.now = T0 - timedelta(hours=1)

        store.append("customer-anna", new_events(1), expected_version=ANY)

        assert [e.recorded_at for e in store.read_all()] == [T0, T0]
        assert_chain_intact(store)


def test_recorded_at__keeps_microseconds(tmp_path):
    moment = T0.replace(microsecond=123456)
    with SQLiteEventStore(tmp_path / "events.db", clock=StepClock(moment)) as store:
        store.append("customer-anna", new_events(1), expected_version=ANY)

        assert next(store.read_all()).recorded_at == moment


def test_occurred_at__given_with_an_offset_reads_back_as_the_same_instant_in_utc(tmp_path):
    event = new_event(at="2024-03-01T10:00:00.000001+05:30")
    with SQLiteEventStore(tmp_path / "events.db") as store:
        store.append("customer-anna", [event], expected_version=ANY)

        occurred = next(store.read_all()).occurred_at

    assert occurred == datetime(2024, 3, 1, 4, 30, 0, 1, tzinfo=timezone.utc)
    assert occurred.tzinfo == timezone.utc


def test_naive_occurred_at__is_refused_before_anything_is_written(tmp_path):
    event = new_event()
    naive = NewEvent(event.event_id, event.type, 1, event.occurred_at.replace(tzinfo=None), event.data)
    with SQLiteEventStore(tmp_path / "events.db") as store:
        with pytest.raises(ValueError, match="naive"):
            store.append("customer-anna", [naive], expected_version=ANY)

        assert store.count() == 0


@pytest.mark.parametrize("expected", [-1, True, "0", None])
def test_bad_expected_version__is_refused(tmp_path, expected):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        with pytest.raises((TypeError, ValueError), match="expected_version"):
            store.append("customer-anna", new_events(1), expected_version=expected)


def test_bad_stream_name__is_refused(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        with pytest.raises(ValueError, match="stream name"):
            store.append("", new_events(1), expected_version=ANY)


@pytest.mark.parametrize("limit", [-1, 1.5, "10"])
def test_bad_limit__is_refused_when_the_read_is_asked_for(tmp_path, limit):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        with pytest.raises(ValueError, match="limit"):
            store.read_all(limit=limit)


def test_paging__reads_cross_page_boundaries_without_gaps(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db", page_size=3) as store:
        written = store.append("customer-anna", new_events(10), expected_version=ANY).outcomes

        assert [e.event_id for e in store.read_all()] == [o.event_id for o in written]
        assert [e.stream_version for e in store.read_stream("customer-anna", 2)] == list(range(2, 10))
        assert len(list(store.read_all(limit=7))) == 7
        assert list(store.read_all(limit=0)) == []


def test_stream_cache__evicted_streams_keep_their_versions(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db", stream_cache_size=4) as store:
        for round_ in range(3):
            expected = ANY if round_ == 0 else round_ - 1
            store.append_batch([StreamAppend(f"customer-{n}", new_events(1), expected) for n in range(10)])

        assert {store.stream_version(f"customer-{n}") for n in range(10)} == {2}


def test_count__counts_stored_events(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        assert store.count() == 0
        events = new_events(3)
        store.append("customer-anna", events + events[:1], expected_version=ANY)

        assert store.count() == 3


def test_threads__concurrent_appenders_all_land_with_a_valid_chain(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as store:

        def append_many(who: str) -> None:
            for _ in range(20):
                store.append(f"customer-{who}", new_events(2), expected_version=ANY)

        threads = [threading.Thread(target=append_many, args=(who,)) for who in ("anna", "ben", "carl", "dora")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert store.count() == 4 * 20 * 2
        assert [e.stream_version for e in store.read_stream("customer-ben")] == list(range(40))
        assert_chain_intact(store)


def test_subscription__wakes_at_once_on_an_append_in_this_process(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        subscription = store.subscribe(0, poll_interval=60)  # polling alone would take a minute
        arrived: list[float] = []
        consumer = threading.Thread(target=lambda: [arrived.append(time.monotonic()) for _ in subscription])
        consumer.start()
        time.sleep(0.1)

        appended = time.monotonic()
        store.append("customer-anna", new_events(1), expected_version=ANY)
        deadline = time.monotonic() + 10
        while not arrived and time.monotonic() < deadline:
            time.sleep(0.005)
        subscription.stop()
        consumer.join(10)

        assert arrived and arrived[0] - appended < 5
        assert not consumer.is_alive()


def test_subscription__polls_up_appends_of_another_process(tmp_path):
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as reader, SQLiteEventStore(path) as other_process:
        subscription = reader.subscribe(0, poll_interval=0.02)
        received = []
        consumer = threading.Thread(target=lambda: [received.append(e) for e in subscription])
        consumer.start()

        other_process.append("customer-anna", new_events(2), expected_version=ANY)
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        subscription.stop()
        consumer.join(10)

        assert [e.stream_version for e in received] == [0, 1]


def test_subscription__closing_the_store_ends_it(tmp_path):
    store = SQLiteEventStore(tmp_path / "events.db")
    subscription = store.subscribe(0, poll_interval=0.02)
    consumer = threading.Thread(target=lambda: list(subscription))
    consumer.start()
    time.sleep(0.05)

    store.close()
    consumer.join(10)

    assert not consumer.is_alive()


def test_stream_cache__a_conflict_later_in_a_batch_leaves_the_earlier_streams_where_they_were(tmp_path):
    # given a stream that exists
    with SQLiteEventStore(tmp_path / "events.db") as store:
        store.append("customer-ben", new_events(1), expected_version=ANY)

        # when a batch plans a new stream, then conflicts on the existing one
        with pytest.raises(WrongExpectedVersion):
            store.append_batch(
                [StreamAppend("customer-anna", new_events(1)), StreamAppend("customer-ben", new_events(1), 5)]
            )
        after = store.append("customer-anna", new_events(1), expected_version=StreamState.NO_STREAM)

        # then nothing of the batch counts: the new stream still starts at version 0
        assert after.current_version == 0
        assert store.count() == 2
