"""append_encoded: the bulk path writes what append_batch writes, in input order, idempotently."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from application.verify import verify_log
from events.encoded import EncodedBatch, encode_events
from events.models import Event
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from events.store import StreamAppend, StreamState
from tests.events.contract import StepClock, assert_chain_intact, to_new_event, wire_event

ANY = StreamState.ANY
T0 = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)


def model(customer: str = "anna", *, event_id: uuid.UUID | None = None, **wire) -> Event:
    return REGISTRY.validate(wire_event(customer=customer, event_id=event_id, **wire))


def models(*customers: str) -> list[Event]:
    return [model(customer) for customer in customers]


def as_appends(events: list[Event]) -> list[StreamAppend]:
    """The same events as append_batch input: one StreamAppend per run of one stream."""
    appends: list[StreamAppend] = []
    for event in events:
        new = to_new_event(event.model_dump(mode="json", exclude_none=True))
        if appends and appends[-1].stream == event.stream:
            appends[-1].events.append(new)
        else:
            appends.append(StreamAppend(event.stream, [new], ANY))
    return appends


def places(outcomes) -> list[tuple[int, int, bool]]:
    return list(zip(outcomes.positions, outcomes.versions, outcomes.duplicates))


@pytest.fixture
def store(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db", clock=StepClock(T0)) as store:
        yield store


def test_append_encoded__writes_the_same_log_as_append_batch(tmp_path):
    # given the same events (in stream runs, so both calls keep one order) and the same clock
    events = [model("anna"), model("anna"), model("ben", type_="order_placed", data={"order_id": "o1",
              "revenue": "12.50", "currency": "EUR"}), model("carl", at="2024-03-01T10:00:00+05:30")]
    with SQLiteEventStore(tmp_path / "batch.db", clock=StepClock(T0)) as by_batch:
        by_batch.append_batch(as_appends(events))
        expected = list(by_batch.read_all())

    # when they are appended through append_encoded
    with SQLiteEventStore(tmp_path / "encoded.db", clock=StepClock(T0)) as by_encoded:
        by_encoded.append_encoded(encode_events(events))
        written = list(by_encoded.read_all())

    # then every field, the hash included, is identical
    assert written == expected


def test_append_encoded__the_chain_verifies(store):
    # given two encoded batches, the second stamped later
    store.append_encoded(encode_events(models("anna", "ben", "anna")))
    store._clock.now = T0 + timedelta(seconds=1)

    # when the second is appended
    store.append_encoded(encode_events(models("ben", "carl")))

    # then the chain holds through the port and through the audit verifier
    assert_chain_intact(store)
    report = verify_log(store)
    assert report.ok and report.events == 5


def test_append_encoded__positions_follow_input_order_and_versions_each_stream(store):
    # given a batch interleaving two streams
    batch = encode_events(models("anna", "ben", "anna", "ben", "anna"))

    # when it is appended
    outcomes = store.append_encoded(batch)

    # then positions are in input order and each stream counts its own versions
    assert places(outcomes) == [(1, 0, False), (2, 0, False), (3, 1, False), (4, 1, False), (5, 2, False)]
    assert [e.event_id.bytes for e in store.read_all()] == batch.ids


def test_append_encoded__continues_streams_written_by_append_batch(store):
    # given a stream with two events
    store.append_batch(as_appends(models("anna", "anna")))

    # when more events of it are appended encoded
    outcomes = store.append_encoded(encode_events(models("anna")))

    # then its versions continue
    assert places(outcomes) == [(3, 2, False)]
    assert store.stream_version("customer-anna") == 2


def test_append_encoded__an_event_stored_earlier_reports_its_original_place(store):
    # given events stored earlier, one by append_batch and one by append_encoded
    first, second = models("anna", "ben")
    store.append_batch(as_appends([first]))
    store.append_encoded(encode_events([second]))

    # when both are sent again beside a new event
    outcomes = store.append_encoded(encode_events([second, model("carl"), first]))

    # then the old ones are duplicates at their original places and only the new one is written
    assert places(outcomes) == [(2, 0, True), (3, 0, False), (1, 0, True)]
    assert store.count() == 3
    assert_chain_intact(store)


def test_append_encoded__an_event_repeated_within_a_batch_is_written_once(store):
    # given a batch holding one event twice
    event = model("anna")
    batch = encode_events([event, model("ben"), event])

    # when it is appended
    outcomes = store.append_encoded(batch)

    # then the repeat reports the first copy's place
    assert places(outcomes) == [(1, 0, False), (2, 0, False), (1, 0, True)]
    assert outcomes.duplicate_count == 1
    assert store.count() == 2


def test_append_encoded__a_batch_of_only_duplicates_writes_nothing(store):
    # given a stored batch
    events = models("anna", "ben")
    store.append_encoded(encode_events(events))
    head = store.head_position()

    # when it is retried
    outcomes = store.append_encoded(encode_events(events))

    # then nothing moves
    assert places(outcomes) == [(1, 0, True), (2, 0, True)]
    assert store.head_position() == head


def test_append_encoded__an_empty_batch_writes_nothing(store):
    assert len(store.append_encoded(EncodedBatch())) == 0
    assert store.head_position() is None


def test_append_encoded__a_clock_going_back_does_not_reorder_recorded_at(store):
    # given an append at T0
    store.append_encoded(encode_events(models("anna")))

    # when the clock goes back an hour before the next append
    store._clock.now = T0 - timedelta(hours=1)
    store.append_encoded(encode_events(models("anna")))

    # then recorded_at stays T0 and the chain holds
    assert [e.recorded_at for e in store.read_all()] == [T0, T0]
    assert_chain_intact(store)


def test_append_encoded__columns_of_different_lengths_are_refused(store):
    batch = encode_events(models("anna", "ben"))
    batch.types.pop()

    with pytest.raises(ValueError, match="length"):
        store.append_encoded(batch)
    assert store.count() == 0


def test_group_commit__encoded_and_batch_appends_queued_together_store_a_shared_event_once(store):
    # given an event sent both through append_batch and append_encoded while the writer is busy
    shared = model("anna")
    results: dict[str, object] = {}
    calls = {
        "batch": lambda: store.append_batch(as_appends([shared])),
        "encoded": lambda: store.append_encoded(encode_events([model("ben"), shared])),
    }
    with store._writer.lock:
        threads = [threading.Thread(target=lambda k=k: results.update({k: calls[k]()})) for k in calls]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(store._writer._queue) < 2:
            assert time.monotonic() < deadline, "appends did not queue up"
            time.sleep(0.001)

    # when the writer takes them as one group
    for thread in threads:
        thread.join(10)

    # then the event is stored once and the later call reports it as a duplicate
    assert store.count() == 2
    batch_outcome = results["batch"][0].outcomes[0]
    encoded = results["encoded"]
    shared_places = {(batch_outcome.position, batch_outcome.duplicate), (encoded.positions[1], encoded.duplicates[1])}
    assert {duplicate for _, duplicate in shared_places} == {True, False}
    assert len({position for position, _ in shared_places}) == 1
    assert_chain_intact(store)
