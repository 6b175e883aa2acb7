"""The one decode of ingestion: documents or parsed items to events in input order, every
invalid item named by its index; bodies as one object, an array or NDJSON."""

import orjson
import pytest

from application.decode import UnreadableBody, decode_body, decode_documents, parse_items, validate_items
from events.registry import REGISTRY


def test_decode_documents__valid_documents_become_events_in_input_order(make_event):
    items = [make_event(), make_event("order_placed"), make_event(anonymous_id="cookie:z")]

    decoded = decode_documents([orjson.dumps(item) for item in items], REGISTRY)

    assert decoded.invalid == []
    assert [str(event.event_id) for event in decoded.events] == [item["event_id"] for item in items]


def test_decode_documents__malformed_and_invalid_documents_are_named_by_index_and_the_rest_kept(make_event):
    first, last = make_event(), make_event()
    documents = [orjson.dumps(first), b"{not json", orjson.dumps(make_event(channel="Not A Channel!")),
                 orjson.dumps(last)]

    decoded = decode_documents(documents, REGISTRY)

    assert [str(event.event_id) for event in decoded.events] == [first["event_id"], last["event_id"]]
    assert [item.index for item in decoded.invalid] == [1, 2]
    assert decoded.invalid[0].errors[0].reason.startswith("malformed JSON")
    assert decoded.invalid[1].errors[0].field == "channel"


def test_decode_documents__answers_as_validate_items_over_the_parsed_documents(make_event):
    items = [make_event(), make_event(type="no_such_type"), [], make_event(occurred_at="2024-03-01T12:00:00")]

    from_documents = decode_documents([orjson.dumps(item) for item in items], REGISTRY)
    from_items = validate_items(items, REGISTRY)

    assert from_documents == from_items


def test_decode_documents__no_documents_is_nothing():
    decoded = decode_documents([], REGISTRY)

    assert (decoded.events, decoded.invalid) == ([], [])


def test_decode_body__a_valid_body_is_one_encoded_batch_in_input_order(make_event):
    items = [make_event() for _ in range(3)]

    decoded = decode_body(orjson.dumps(items), False, REGISTRY)

    assert decoded.count == 3 and decoded.invalid == [] and decoded.unreadable is None
    assert [event_id.hex() for event_id in decoded.batch.ids] == [item["event_id"].replace("-", "") for item in items]


def test_decode_body__an_invalid_item_encodes_nothing_and_names_its_index(make_event):
    body = b"\n".join([orjson.dumps(make_event()), orjson.dumps(make_event(type="no_such_type"))])

    decoded = decode_body(body, True, REGISTRY)

    assert decoded.count == 2 and len(decoded.batch) == 0
    assert [item.index for item in decoded.invalid] == [1]


@pytest.mark.parametrize(("body", "ndjson", "error"), [
    (b"  ", False, "empty_body"), (b"[]", False, "empty_body"), (b"[{", False, "malformed_json"),
    (b"\n\n", True, "empty_body"), (b'{"a": 1}\n{nope', True, "malformed_json"),
])
def test_unreadable_bodies__name_what_is_wrong(body, ndjson, error):
    with pytest.raises(UnreadableBody) as raised:
        parse_items(body, ndjson=ndjson)

    assert raised.value.document["error"] == error
    assert decode_body(body, ndjson, REGISTRY).unreadable == raised.value.document
