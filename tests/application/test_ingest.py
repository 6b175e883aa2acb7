"""The ingestion service shared by HTTP, the CLI and the Kafka inbound agent: validate
whole, append in input order, idempotent by event_id."""

import pytest

from application.decode import ItemError
from application.ingest import Ingestor
from events.models import PageViewed
from events.registry import REGISTRY, encode_body


@pytest.fixture
def ingestor(store):
    return Ingestor(store)


def test_validate_batch__valid_items_become_events_in_input_order(ingestor, make_event):
    items = [make_event(), make_event("order_placed"), make_event("ad_clicked", channel="google_ads")]

    events, invalid = ingestor.validate_batch(items)

    assert invalid == []
    assert [str(e.event_id) for e in events] == [item["event_id"] for item in items]
    assert [e.TYPE for e in events] == ["page_viewed", "order_placed", "ad_clicked"]


def test_validate_batch__every_invalid_item_is_reported_with_its_index_field_and_reason(ingestor, make_event):
    items = [
        make_event(),
        make_event(occurred_at="2024-03-01T12:00:00"),  # naive
        make_event(type="no_such_type"),
        "not an object",
        make_event("order_placed", data={"order_id": "o", "revenue": "-1", "currency": "EUR"}),
    ]

    events, invalid = ingestor.validate_batch(items)

    assert len(events) == 1
    assert [item.index for item in invalid] == [1, 2, 3, 4]
    assert invalid[0].errors[0].field == "occurred_at"
    assert invalid[1].errors[0].field == "type" and "no_such_type" in invalid[1].errors[0].reason
    assert "expected a JSON object" in invalid[2].errors[0].reason
    assert invalid[3].errors[0].field == "data.revenue"


def test_validate_batch__appends_nothing(ingestor, store, make_event):
    ingestor.validate_batch([make_event(), make_event()])

    assert store.head_position() is None


def test_item_error__serialises_index_field_and_reason(ingestor):
    _, invalid = ingestor.validate_batch([{"type": "page_viewed"}])

    document = invalid[0].as_dict()

    assert isinstance(invalid[0], ItemError)
    assert document["index"] == 0
    assert {"field": "event_id", "reason": "Field required"} in document["errors"]


def test_append__one_outcome_per_event_with_positions_in_input_order_across_streams(ingestor, store, make_event):
    events, _ = ingestor.validate_batch(
        [make_event(anonymous_id="cookie:a"), make_event(anonymous_id="cookie:b"), make_event(anonymous_id="cookie:a")]
    )

    outcomes = ingestor.append(events)

    assert outcomes.versions == [0, 0, 1]
    assert outcomes.duplicates == [False, False, False]
    assert outcomes.positions == sorted(set(outcomes.positions))
    stored = {r.position: r.event_id for r in store.read_all()}
    assert [stored[position] for position in outcomes.positions] == [e.event_id for e in events]


def test_append__stores_the_canonical_body_under_the_event_identity_stream(ingestor, store, make_event):
    events, _ = ingestor.validate_batch([make_event(customer_id="c-9", anonymous_id=None)])

    ingestor.append(events)

    (recorded,) = store.read_stream("customer-c-9")
    assert recorded.type == "page_viewed" and recorded.schema_version == PageViewed.SCHEMA_VERSION
    assert recorded.data == encode_body(events[0])


def test_append__same_event_id_twice_in_one_batch_is_stored_once_and_second_reported_duplicate(
    ingestor, store, make_event
):
    item = make_event()
    events, _ = ingestor.validate_batch([item, dict(item)])

    outcomes = ingestor.append(events)

    assert outcomes.duplicates == [False, True]
    assert outcomes.positions[1] == outcomes.positions[0] and outcomes.versions[1] == outcomes.versions[0]
    assert len(list(store.read_all())) == 1


def test_append__event_id_already_stored_is_reported_with_the_original_position(ingestor, store, make_event):
    item = make_event()
    original = ingestor.append(ingestor.validate_batch([item])[0])
    ingestor.append(ingestor.validate_batch([make_event()])[0])

    retry = ingestor.append(ingestor.validate_batch([item])[0])

    assert retry.duplicates == [True]
    assert retry.positions == original.positions
    assert len(list(store.read_all())) == 2


def test_append__reused_event_id_with_other_content_keeps_the_first(ingestor, store, make_event):
    item = make_event(channel="direct")
    events, _ = ingestor.validate_batch([item, {**item, "channel": "email"}])

    outcomes = ingestor.append(events)

    assert outcomes.duplicates == [False, True]
    (recorded,) = store.read_all()
    assert REGISTRY.decode_stored(recorded.type, recorded.schema_version, recorded.data).channel == "direct"


def test_append__empty_input_appends_nothing(ingestor, store):
    assert len(ingestor.append([])) == 0
    assert store.head_position() is None


def test_append__stores_type_version_time_and_canonical_body(ingestor, store, make_event):
    event = REGISTRY.validate(make_event("order_placed"))

    ingestor.append([event])

    (recorded,) = store.read_all()
    assert (recorded.event_id, recorded.type, recorded.schema_version) == (event.event_id, "order_placed", 2)
    assert recorded.occurred_at == event.occurred_at
    assert recorded.data == encode_body(event) and b'"type"' not in recorded.data
