"""The event-store contract: what every adapter of ``events.store.EventStore`` does.

An adapter's test module subclasses ``EventStoreContract`` and supplies the
``store`` fixture (nothing else); the class is not collected on its own because
its name does not start with ``Test``. The suite uses only the port: stream names
are unique per test (``stream`` fixture), positions are compared by order only
(never assumed dense or starting anywhere), and the log may hold other tests'
events (a shared server), so reads look only at this test's streams after the
head they started from. Where adapters legitimately differ, a named class
attribute says so; no contract test is skipped or overridden.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from events.hashing import GENESIS, canonical_of, chain
from events.registry import REGISTRY, encode_body
from events.store import (
    DuplicateEventInBatch,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)

ANY, NO_STREAM, EXISTS = StreamState.ANY, StreamState.NO_STREAM, StreamState.EXISTS
WAIT_SECONDS = 10.0  # upper bound for things that happen "promptly"; passing runs take milliseconds


def wire_event(
    type_: str = "page_viewed",
    *,
    at: str = "2024-03-01T10:00:00.123456+00:00",
    customer: str | None = "anna",
    anonymous: str | None = None,
    channel: str | None = "instagram",
    event_id: uuid.UUID | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A wire-format event (a dict as an emitter sends it)."""
    body: dict[str, Any] = {"event_id": str(event_id or uuid.uuid4()), "type": type_, "occurred_at": at}
    if customer is not None:
        body["customer_id"] = customer
    if anonymous is not None:
        body["anonymous_id"] = anonymous
    if channel is not None and REGISTRY.model(type_).KIND == "touch":
        body["channel"] = channel
    body.update(fields)
    return body


def to_new_event(body: dict[str, Any], metadata: bytes = b"{}") -> NewEvent:
    """A ``NewEvent`` built the way ingestion builds it: validated by the registry,
    stored as ``encode_body``."""
    event = REGISTRY.validate(body)
    return NewEvent(event.event_id, event.type, event.SCHEMA_VERSION, event.occurred_at, encode_body(event), metadata)


def new_event(metadata: bytes = b"{}", **wire: Any) -> NewEvent:
    """``to_new_event(wire_event(**wire))``."""
    return to_new_event(wire_event(**wire), metadata)


def new_events(count: int, **wire: Any) -> list[NewEvent]:
    return [new_event(**wire) for _ in range(count)]


class EventStoreContract:
    """The port's specification, as tests. Subclasses provide ``store``."""

    # Does append_batch write all streams in one transaction (True), or stream by stream,
    # each atomic and idempotent so a retried batch completes (False)?
    atomic_multi_stream_batch: bool = True
    # Does the store hand out a fresh, empty log to every test?
    fresh_store: bool = True
    # Does read_stream return the hash-chain entry (read_all always does)?
    hash_in_read_stream: bool = True

    @pytest.fixture
    def store(self) -> EventStore:
        pytest.fail(f"{type(self).__name__} must supply the store fixture (a fresh store per test)")

    @pytest.fixture
    def stream(self) -> Callable[[str], str]:
        """Stream names unique to one test: ``stream("anna")`` -> ``customer-<test>-anna``."""
        prefix = uuid.uuid4().hex[:10]
        return lambda name: f"customer-{prefix}-{name}"

    # --- helpers -------------------------------------------------------------------

    @staticmethod
    def ours(store: EventStore, since: int | None, streams: Iterable[str]) -> list[RecordedEvent]:
        """This test's events after log head ``since``, in global order."""
        wanted = set(streams)
        start = 0 if since is None else since
        return [e for e in store.read_all(start) if (since is None or e.position > since) and e.stream in wanted]

    # --- append and read one stream ----------------------------------------------------

    def test_append__new_stream_starts_at_version_zero(self, store, stream):
        events = new_events(3)

        result = store.append(stream("anna"), events, expected_version=NO_STREAM)

        assert [o.stream_version for o in result.outcomes] == [0, 1, 2]
        assert [o.event_id for o in result.outcomes] == [e.event_id for e in events]
        assert not any(o.duplicate for o in result.outcomes)
        assert result.current_version == 2

    def test_read_stream__returns_what_was_appended_in_version_order(self, store, stream):
        events = new_events(3, metadata=b'{"trace":"t-1"}')
        result = store.append(stream("anna"), events, expected_version=ANY)

        read = list(store.read_stream(stream("anna")))

        assert [r.event_id for r in read] == [e.event_id for e in events]
        assert [r.stream_version for r in read] == [0, 1, 2]
        assert [r.position for r in read] == [o.position for o in result.outcomes]
        assert all(r.stream == stream("anna") for r in read)
        for recorded, sent in zip(read, events):
            assert (recorded.type, recorded.schema_version) == (sent.type, sent.schema_version)
            assert (recorded.data, recorded.metadata) == (sent.data, sent.metadata)
            assert recorded.occurred_at == sent.occurred_at
            assert recorded.occurred_at.utcoffset() == timedelta(0)

    def test_read_stream__from_version_and_limit(self, store, stream):
        store.append(stream("anna"), new_events(5), expected_version=ANY)

        read = list(store.read_stream(stream("anna"), 2, limit=2))

        assert [r.stream_version for r in read] == [2, 3]

    def test_read_stream__unknown_stream_is_empty(self, store, stream):
        assert list(store.read_stream(stream("nobody"))) == []

    def test_stored_events_decode_back_to_the_validated_event(self, store, stream):
        body = wire_event("order_placed", data={"order_id": "o-1", "revenue": "120.50", "currency": "EUR"})
        store.append(stream("anna"), [to_new_event(body)], expected_version=ANY)

        (recorded,) = store.read_stream(stream("anna"))

        assert REGISTRY.decode_stored(recorded.type, recorded.schema_version, recorded.data) == REGISTRY.validate(body)

    # --- global order -----------------------------------------------------------------

    def test_read_all__interleaves_streams_in_append_order(self, store, stream):
        head = store.head_position()
        first = store.append(stream("anna"), new_events(2), expected_version=ANY)
        second = store.append(stream("ben"), new_events(1), expected_version=ANY)
        third = store.append(stream("anna"), new_events(1), expected_version=ANY)

        read = self.ours(store, head, [stream("anna"), stream("ben")])

        expected = [o.event_id for r in (first, second, third) for o in r.outcomes]
        assert [r.event_id for r in read] == expected
        positions = [r.position for r in read]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)

    def test_read_all__from_position_is_inclusive(self, store, stream):
        outcomes = store.append(stream("anna"), new_events(4), expected_version=ANY).outcomes

        read = [e for e in store.read_all(outcomes[2].position) if e.stream == stream("anna")]

        assert [r.event_id for r in read] == [o.event_id for o in outcomes[2:]]

    def test_read_all__limit_caps_the_number_of_events(self, store, stream):
        outcomes = store.append(stream("anna"), new_events(4), expected_version=ANY).outcomes

        read = list(store.read_all(outcomes[0].position, limit=3))

        assert len(read) == 3
        assert read[0].event_id == outcomes[0].event_id

    def test_head_position__is_the_newest_event(self, store, stream):
        outcomes = store.append(stream("anna"), new_events(2), expected_version=ANY).outcomes

        head = store.head_position()

        assert head is not None and head >= outcomes[-1].position
        if self.fresh_store:
            assert head == outcomes[-1].position

    def test_head_position__empty_log(self, store):
        if self.fresh_store:
            assert store.head_position() is None
        else:  # a shared log is never known to be empty: only the type is promised
            assert store.head_position() is None or isinstance(store.head_position(), int)

    def test_count__grows_by_the_events_written_and_not_by_duplicates(self, store, stream):
        before = store.count()
        events = new_events(3)

        store.append(stream("anna"), events, expected_version=ANY)
        store.append(stream("anna"), events[:2], expected_version=ANY)  # a retry: nothing new

        assert store.count() == before + 3

    def test_stream_version__none_until_the_first_append(self, store, stream):
        assert store.stream_version(stream("anna")) is None
        store.append(stream("anna"), new_events(3), expected_version=ANY)
        assert store.stream_version(stream("anna")) == 2

    # --- expected version ---------------------------------------------------------------

    def test_expected_version__exact_version_appends(self, store, stream):
        store.append(stream("anna"), new_events(2), expected_version=NO_STREAM)

        result = store.append(stream("anna"), new_events(1), expected_version=1)

        assert result.current_version == 2

    def test_expected_version__stale_version_conflicts_and_writes_nothing(self, store, stream):
        store.append(stream("anna"), new_events(2), expected_version=ANY)
        late = new_events(2)

        with pytest.raises(WrongExpectedVersion) as conflict:
            store.append(stream("anna"), late, expected_version=0)

        assert (conflict.value.stream, conflict.value.expected, conflict.value.actual) == (stream("anna"), 0, 1)
        assert stream("anna") in str(conflict.value)
        assert store.stream_version(stream("anna")) == 1
        stored_ids = {e.event_id for e in store.read_stream(stream("anna"))}
        assert stored_ids.isdisjoint(e.event_id for e in late)

    def test_expected_version__exact_version_on_missing_stream_conflicts(self, store, stream):
        with pytest.raises(WrongExpectedVersion) as conflict:
            store.append(stream("anna"), new_events(1), expected_version=0)

        assert conflict.value.actual is None
        assert store.stream_version(stream("anna")) is None

    def test_expected_version__no_stream_on_existing_stream_conflicts(self, store, stream):
        store.append(stream("anna"), new_events(1), expected_version=ANY)

        with pytest.raises(WrongExpectedVersion):
            store.append(stream("anna"), new_events(1), expected_version=NO_STREAM)

        assert store.stream_version(stream("anna")) == 0

    def test_expected_version__exists_on_missing_stream_conflicts(self, store, stream):
        with pytest.raises(WrongExpectedVersion):
            store.append(stream("anna"), new_events(1), expected_version=EXISTS)

        assert list(store.read_stream(stream("anna"))) == []

    def test_expected_version__exists_on_existing_stream_appends(self, store, stream):
        store.append(stream("anna"), new_events(1), expected_version=ANY)

        result = store.append(stream("anna"), new_events(1), expected_version=EXISTS)

        assert result.current_version == 1

    def test_expected_version__any_appends_whatever_the_state(self, store, stream):
        store.append(stream("anna"), new_events(1), expected_version=ANY)
        store.append(stream("anna"), new_events(1), expected_version=ANY)

        assert store.stream_version(stream("anna")) == 1

    # --- idempotency ----------------------------------------------------------------------

    def test_duplicate__in_a_later_call_reports_the_original_position(self, store, stream):
        event = new_event()
        original = store.append(stream("anna"), [event], expected_version=ANY).outcomes[0]

        retry = store.append(stream("anna"), [event], expected_version=ANY).outcomes[0]

        assert retry.duplicate
        assert (retry.position, retry.stream_version) == (original.position, original.stream_version)
        assert len(list(store.read_stream(stream("anna")))) == 1

    def test_duplicate__retry_of_an_applied_append_ignores_the_stale_expected_version(self, store, stream):
        events = new_events(2)
        store.append(stream("anna"), events, expected_version=NO_STREAM)

        retry = store.append(stream("anna"), events, expected_version=NO_STREAM)

        assert all(o.duplicate for o in retry.outcomes)
        assert store.stream_version(stream("anna")) == 1

    def test_duplicate__mixed_with_new_events_writes_only_the_new_ones(self, store, stream):
        old = new_event()
        store.append(stream("anna"), [old], expected_version=ANY)
        fresh = new_event()

        result = store.append(stream("anna"), [old, fresh], expected_version=0)

        assert [o.duplicate for o in result.outcomes] == [True, False]
        assert [e.event_id for e in store.read_stream(stream("anna"))] == [old.event_id, fresh.event_id]

    def test_duplicate__twice_in_one_call_is_stored_once(self, store, stream):
        event = new_event()

        result = store.append(stream("anna"), [event, event], expected_version=ANY)

        first, second = result.outcomes
        assert (first.duplicate, second.duplicate) == (False, True)
        assert second.position == first.position
        assert len(list(store.read_stream(stream("anna")))) == 1

    def test_duplicate__same_id_with_different_content_in_one_call_is_refused(self, store, stream):
        event = new_event()
        impostor = NewEvent(event.event_id, event.type, event.schema_version, event.occurred_at, b'{"other":1}')

        with pytest.raises(DuplicateEventInBatch):
            store.append(stream("anna"), [event, impostor], expected_version=ANY)

        assert list(store.read_stream(stream("anna"))) == []

    # --- batches ---------------------------------------------------------------------------

    def test_append_batch__writes_every_stream_and_reports_each(self, store, stream):
        results = store.append_batch(
            [
                StreamAppend(stream("anna"), new_events(2), NO_STREAM),
                StreamAppend(stream("ben"), new_events(1), NO_STREAM),
            ]
        )

        assert [r.stream for r in results] == [stream("anna"), stream("ben")]
        assert [r.current_version for r in results] == [1, 0]
        assert store.stream_version(stream("ben")) == 0

    def test_append_batch__conflict_in_one_stream(self, store, stream):
        store.append(stream("ben"), new_events(1), expected_version=ANY)
        batch = [
            StreamAppend(stream("anna"), new_events(1), NO_STREAM),
            StreamAppend(stream("ben"), new_events(1), NO_STREAM),  # conflicts: ben exists
        ]

        with pytest.raises(WrongExpectedVersion):
            store.append_batch(batch)

        assert store.stream_version(stream("ben")) == 0
        if self.atomic_multi_stream_batch:
            assert store.stream_version(stream("anna")) is None
        else:  # stream by stream: fixing the conflict and retrying the whole batch completes it
            fixed = [batch[0], StreamAppend(stream("ben"), batch[1].events, 0)]
            results = store.append_batch(fixed)
            assert store.stream_version(stream("anna")) == 0
            assert results[1].outcomes[0].duplicate is False

    def test_append_batch__same_stream_twice_continues_its_versions(self, store, stream):
        results = store.append_batch(
            [
                StreamAppend(stream("anna"), new_events(1), NO_STREAM),
                StreamAppend(stream("anna"), new_events(1), 0),
            ]
        )

        assert [r.current_version for r in results] == [0, 1]

    # --- recorded_at ---------------------------------------------------------------------------

    def test_recorded_at__set_by_the_store_at_append_time(self, store, stream):
        before = datetime.now(timezone.utc)
        store.append(stream("anna"), new_events(2, at="2019-05-01T08:00:00+00:00"), expected_version=ANY)
        after = datetime.now(timezone.utc)

        read = list(store.read_stream(stream("anna")))

        for event in read:
            assert event.recorded_at.utcoffset() == timedelta(0)
            assert before - timedelta(seconds=5) <= event.recorded_at <= after + timedelta(seconds=5)
            assert event.occurred_at == datetime(2019, 5, 1, 8, tzinfo=timezone.utc)

    def test_recorded_at__never_decreases_in_global_order(self, store, stream):
        head = store.head_position()
        for name in ("anna", "ben", "anna", "carl"):
            store.append(stream(name), new_events(2), expected_version=ANY)

        times = [e.recorded_at for e in self.ours(store, head, [stream(n) for n in ("anna", "ben", "carl")])]

        assert len(times) == 8
        assert times == sorted(times)

    # --- hash chain -----------------------------------------------------------------------------

    def test_hash_chain__each_hash_links_the_previous_one_in_global_order(self, store, stream):
        head = store.head_position()
        store.append(stream("anna"), new_events(2), expected_version=ANY)
        store.append_batch([StreamAppend(stream("ben"), new_events(2)), StreamAppend(stream("anna"), new_events(1))])

        log = list(store.read_all(0 if head is None else head))
        previous = GENESIS if head is None else log.pop(0).hash

        assert len(log) >= 5
        for event in log:
            assert event.hash == chain(previous, canonical_of(event)), f"chain broken at position {event.position}"
            previous = event.hash

    def test_hash_chain__read_stream_returns_the_same_hashes_as_read_all(self, store, stream):
        outcomes = store.append(stream("anna"), new_events(2), expected_version=ANY).outcomes

        by_stream = [e.hash for e in store.read_stream(stream("anna"))]
        by_log = [e.hash for e in store.read_all(outcomes[0].position) if e.stream == stream("anna")]

        assert all(h is not None and len(h) == 32 for h in by_log)
        if self.hash_in_read_stream:
            assert by_stream == by_log
        else:
            assert by_stream == [None, None]

    # --- subscription ----------------------------------------------------------------------------

    def test_subscribe__catches_up_then_follows_live_appends(self, store, stream):
        history = store.append(stream("anna"), new_events(2), expected_version=ANY).outcomes
        subscription = store.subscribe(history[0].position, poll_interval=0.02)
        received: list[RecordedEvent] = []
        consumer = _consume(subscription, received, lambda e: e.stream == stream("anna"))

        _wait_until(lambda: len(received) >= 2)
        live = store.append(stream("anna"), new_events(1), expected_version=1).outcomes
        _wait_until(lambda: len(received) >= 3)
        subscription.stop()
        consumer.join(WAIT_SECONDS)

        assert not consumer.is_alive()
        assert [e.event_id for e in received] == [o.event_id for o in history + live]

    def test_subscribe__sees_appends_made_from_another_thread(self, store, stream):
        head = store.head_position()
        subscription = store.subscribe(0 if head is None else head, poll_interval=0.02)
        received: list[RecordedEvent] = []
        consumer = _consume(subscription, received, lambda e: e.stream == stream("ben"))

        writer = threading.Thread(target=lambda: store.append(stream("ben"), new_events(3), expected_version=ANY))
        writer.start()
        writer.join(WAIT_SECONDS)
        _wait_until(lambda: len(received) >= 3)
        subscription.stop()
        consumer.join(WAIT_SECONDS)

        assert [e.stream_version for e in received] == [0, 1, 2]

    def test_subscribe__stop_ends_a_waiting_iteration(self, store, stream):
        store.append(stream("anna"), new_events(1), expected_version=ANY)
        subscription = store.subscribe((store.head_position() or 0) + 1, poll_interval=0.02)
        consumer = _consume(subscription, [], lambda e: True)
        time.sleep(0.1)  # let it reach the live wait

        subscription.stop()
        consumer.join(WAIT_SECONDS)

        assert not consumer.is_alive()


def assert_chain_intact(store: EventStore) -> None:
    """Every hash of the whole log links the previous one, from GENESIS (a fresh store)."""
    previous = GENESIS
    for event in store.read_all():
        assert event.hash == chain(previous, canonical_of(event)), f"chain broken at position {event.position}"
        previous = event.hash


def _consume(subscription, into: list, wanted: Callable[[RecordedEvent], bool]) -> threading.Thread:
    def run() -> None:
        for event in subscription:
            if wanted(event):
                into.append(event)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the store"
        time.sleep(0.005)


class StepClock:
    """A clock the test sets (stores take ``clock=``)."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now
