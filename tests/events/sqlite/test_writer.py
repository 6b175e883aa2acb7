"""Group commit: appends that wait for the writer are committed together, each on its own terms."""

from __future__ import annotations

import threading
import time

import pytest

from events.sqlite.store import SQLiteEventStore
from events.store import StreamState, WrongExpectedVersion
from tests.events.contract import assert_chain_intact, new_events


def queue_appends_while_the_writer_is_busy(store, calls):
    """Run ``calls`` (stream, events, expected) in threads while the writer lock is held,
    so they queue up; release it and collect each call's result or error."""
    outcomes: dict[str, object] = {}

    def call(stream, events, expected):
        try:
            outcomes[stream] = store.append(stream, events, expected_version=expected)
        except Exception as error:  # noqa: BLE001 - each caller's own error is what is checked
            outcomes[stream] = error

    with store._writer.lock:
        threads = [threading.Thread(target=call, args=args) for args in calls]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(store._writer._queue) < len(calls):
            assert time.monotonic() < deadline, "appends did not queue up"
            time.sleep(0.001)
    for thread in threads:
        thread.join(10)
    return outcomes


@pytest.fixture
def store(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        yield store


def test_group_commit__queued_appends_commit_in_one_transaction(store):
    commits_before = store._append_count
    calls = [(f"customer-{n}", new_events(2), StreamState.NO_STREAM) for n in range(5)]

    outcomes = queue_appends_while_the_writer_is_busy(store, calls)

    assert store._append_count == commits_before + 1
    assert all(result.current_version == 1 for result in outcomes.values())
    assert store.count() == 10
    assert_chain_intact(store)


def test_group_commit__a_conflict_fails_only_its_own_append(store):
    store.append("customer-taken", new_events(1), expected_version=StreamState.ANY)
    calls = [
        ("customer-anna", new_events(2), StreamState.NO_STREAM),
        ("customer-taken", new_events(2), StreamState.NO_STREAM),  # exists already: conflict
        ("customer-ben", new_events(1), StreamState.NO_STREAM),
    ]

    outcomes = queue_appends_while_the_writer_is_busy(store, calls)

    assert isinstance(outcomes["customer-taken"], WrongExpectedVersion)
    assert outcomes["customer-anna"].current_version == 1
    assert outcomes["customer-ben"].current_version == 0
    assert store.stream_version("customer-taken") == 0
    assert store.count() == 1 + 2 + 1
    assert_chain_intact(store)


def test_group_commit__appends_to_one_stream_continue_each_other(store):
    calls = [(f"customer-anna-{n}", new_events(1), StreamState.ANY) for n in range(3)]
    calls += [("customer-shared", new_events(1), StreamState.ANY)]

    outcomes = queue_appends_while_the_writer_is_busy(store, calls)

    positions = sorted(o.outcomes[0].position for o in outcomes.values())
    assert len(set(positions)) == 4
    assert [e.stream_version for e in store.read_stream("customer-shared")] == [0]


def test_group_commit__a_duplicate_across_queued_appends_is_stored_once(store):
    shared = new_events(1)
    calls = [("customer-anna", shared, StreamState.ANY), ("customer-anna-again", shared, StreamState.ANY)]

    outcomes = queue_appends_while_the_writer_is_busy(store, calls)

    flags = sorted(o.outcomes[0].duplicate for o in outcomes.values())
    assert flags == [False, True]
    assert store.count() == 1
