"""An event_id sent again: a true repeat is a duplicate, other content a conflict that keeps the
whole batch out of the log (``Ingestor.append_encoded(..., refuse_conflicts=True)``)."""

from __future__ import annotations

from datetime import datetime, timezone
from uuid import UUID, uuid4

import orjson
import pytest

from application.ingest import Conflict, ConflictingDuplicates, Ingestor
from events.encoded import EncodedBatch, encode_events
from events.registry import REGISTRY
from events.store import NewEvent, StreamState
from tests.conftest import wire_event


def batch_of(*items) -> EncodedBatch:
    return encode_events([REGISTRY.validate(item) for item in items])


def test_no_duplicates__appended_in_one_call(store):
    outcomes = Ingestor(store).append_encoded(batch_of(wire_event(), wire_event()), refuse_conflicts=True)

    assert outcomes.duplicates == [False, False]
    assert store.count() == 2


def test_stored_id_with_other_content__raises_naming_the_original_and_stores_nothing(store):
    ingestor = Ingestor(store)
    original = wire_event(channel="email")
    position = ingestor.append_encoded(batch_of(original)).positions[0]

    with pytest.raises(ConflictingDuplicates) as raised:
        ingestor.append_encoded(batch_of(wire_event(), {**original, "channel": "web"}), refuse_conflicts=True)

    assert raised.value.conflicts == [Conflict(1, UUID(original["event_id"]), position=position)]
    assert not raised.value.stored_anyway
    assert store.count() == 1


def test_stored_id_with_the_same_content__is_a_duplicate_and_the_rest_is_stored(store):
    ingestor = Ingestor(store)
    original = wire_event()
    first = ingestor.append_encoded(batch_of(original))

    outcomes = ingestor.append_encoded(batch_of(original, wire_event()), refuse_conflicts=True)

    assert outcomes.duplicates == [True, False]
    assert outcomes.positions[0] == first.positions[0]
    assert store.count() == 2


def test_repeat_within_the_batch_with_other_content__raises_naming_the_first_copy(store):
    event = wire_event()

    with pytest.raises(ConflictingDuplicates) as raised:
        Ingestor(store).append_encoded(batch_of(event, wire_event(), {**event, "campaign": "x"}), refuse_conflicts=True)

    assert raised.value.conflicts == [Conflict(2, UUID(event["event_id"]), first_index=0)]
    assert store.count() == 0


def test_repeat_within_the_batch_with_the_same_content__is_a_duplicate(store):
    event = wire_event()

    outcomes = Ingestor(store).append_encoded(batch_of(event, event), refuse_conflicts=True)

    assert outcomes.duplicates == [False, True]
    assert store.count() == 1


def test_original_stored_at_an_older_schema_version__is_compared_after_upcasting(store):
    event_id = uuid4()
    v1 = {"event_id": str(event_id), "occurred_at": "2024-03-01T12:00:00Z", "customer_id": "c-1",
          "data": {"order_id": "o-1", "total_cents": 1990, "currency": "EUR"}}
    store.append("customer-c-1", [NewEvent(event_id, "order_placed", 1, datetime(2024, 3, 1, 12, tzinfo=timezone.utc),
                                           orjson.dumps(v1))], expected_version=StreamState.ANY)
    same = wire_event("order_placed", event_id=str(event_id), data={"order_id": "o-1", "revenue": "19.90",
                                                                     "currency": "EUR"})
    other = {**same, "data": {**same["data"], "revenue": "29.90"}}
    ingestor = Ingestor(store)

    assert ingestor.append_encoded(batch_of(same), refuse_conflicts=True).duplicates == [True]
    with pytest.raises(ConflictingDuplicates):
        ingestor.append_encoded(batch_of(other), refuse_conflicts=True)


def test_without_refusal__a_conflict_is_reported_as_a_duplicate_as_before(store):
    ingestor = Ingestor(store)
    original = wire_event()
    ingestor.append_encoded(batch_of(original))

    outcomes = ingestor.append_encoded(batch_of({**original, "channel": "web2"}))

    assert outcomes.duplicates == [True]


class PortOnlyStore:
    """A store without ``append_encoded`` (as KurrentDB): appends go through the port."""

    def __init__(self, store):
        self.inner = store

    def __getattr__(self, name):
        if name == "append_encoded":
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_store_that_cannot_refuse__still_reports_the_conflict_after_appending(store):
    port_only = PortOnlyStore(store)
    ingestor = Ingestor(port_only)
    original = wire_event()
    ingestor.append_encoded(batch_of(original))

    with pytest.raises(ConflictingDuplicates) as raised:
        ingestor.append_encoded(batch_of({**original, "channel": "web2"}, wire_event()), refuse_conflicts=True)

    assert raised.value.stored_anyway and [c.index for c in raised.value.conflicts] == [0]
    assert store.count() == 2

