"""The registry: upcasting old versions, refusing ambiguity, extension by other teams."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import ClassVar, Literal

import orjson
import pytest

from events.models import CORE_EVENT_TYPES, PRIVACY_EVENT_TYPES, TRACKING_EVENT_TYPES, Payload, ShortText, Touch
from events.registry import (
    PLUGIN_ENTRY_POINT_GROUP,
    REGISTRY,
    InvalidEvent,
    RegistryError,
    default_registry,
    encode_body,
    encode_wire,
)


def order_v1(total_cents) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "order_placed",
        "schema_version": 1,
        "occurred_at": "2023-11-24T18:30:00Z",
        "customer_id": "anna",
        "data": {"order_id": "o-1", "total_cents": total_cents, "currency": "EUR"},
    }


class WebinarData(Payload):
    webinar_id: ShortText
    minutes_watched: int = 0


class WebinarAttended(Touch):
    """What another team adds, in its own package, without touching core code."""

    TYPE: ClassVar[str] = "webinar_attended"
    type: Literal["webinar_attended"] = "webinar_attended"
    data: WebinarData


def webinar(**changes) -> dict:
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "webinar_attended",
        "occurred_at": "2024-02-02T15:00:00Z",
        "anonymous_id": "email:ab12",
        "channel": "webinar",
        "data": {"webinar_id": "w-9", "minutes_watched": 35},
    }
    return {**body, **changes}


class FakeEntryPoint:
    def __init__(self, target):
        self.target = target

    def load(self):
        return self.target


# --- upcasting -----------------------------------------------------------------------


def test_upcaster__order_placed_v1_total_cents_becomes_v2_revenue():
    event = REGISTRY.validate(order_v1(12345))

    assert event.data.revenue == Decimal("123.45")
    assert type(event).SCHEMA_VERSION == 2


def test_upcaster__small_amounts_keep_their_cents():
    assert REGISTRY.validate(order_v1(7)).data.revenue == Decimal("0.07")


def test_upcaster__a_bad_v1_amount_is_reported_on_the_v2_field():
    with pytest.raises(InvalidEvent) as refused:
        REGISTRY.validate(order_v1("lots"))

    assert [e.field for e in refused.value.errors] == ["data.revenue"]


def test_upcaster__applies_to_stored_old_versions_too():
    body = orjson.dumps({k: v for k, v in order_v1(500).items() if k not in ("type", "schema_version")})

    event = REGISTRY.decode_stored("order_placed", 1, body)

    assert event.data.revenue == Decimal("5.00")


def test_stored_wire__of_a_current_version_body_is_byte_for_byte_encode_wire():
    # given demo journeys (every core type) and a team's own type, stored as canonical bodies
    from application.demo import generate

    registry = default_registry()
    registry.register(WebinarAttended)
    events = [registry.validate(item) for item in generate(40, seed=5)]
    events.append(registry.validate({
        "event_id": str(uuid.uuid4()), "type": "customers_merged", "occurred_at": "2024-05-01T09:00:00Z",
        "customer_id": "c-1", "data": {"duplicate_customer_id": "c-2"},
    }))
    events.append(registry.validate({
        "event_id": str(uuid.uuid4()), "type": "webinar_attended", "occurred_at": "2024-05-01T10:00:00.250+02:00",
        "anonymous_id": "cookie:w", "channel": "email", "data": {"webinar_id": "w-1", "minutes_watched": 12},
    }))
    assert {event.TYPE for event in events} >= {model.TYPE for model in CORE_EVENT_TYPES} | {"webinar_attended"}

    # when the log reads them out
    read = [registry.stored_wire(event.TYPE, event.SCHEMA_VERSION, encode_body(event)) for event in events]

    # then each is exactly what encoding the validated event gives
    assert read == [encode_wire(event) for event in events]


def test_stored_wire__an_older_version_is_upcast_to_the_current_wire_form():
    body = orjson.dumps({k: v for k, v in order_v1(500).items() if k not in ("type", "schema_version")})

    wire = orjson.loads(REGISTRY.stored_wire("order_placed", 1, body))

    assert wire["type"] == "order_placed"
    assert wire["data"]["revenue"] == "5.00" and "total_cents" not in wire["data"]


@pytest.mark.parametrize("damaged", [
    b'{"event_id":"0b6f", "occurred_at": bro', b"", b'{"event_id": 7}', b"[1, 2]",
    b'{"event_id":"0b6f5c1e-0000-4000-8000-000000000000"}',  # nothing after the id
])
def test_stored_wire__a_body_that_does_not_decode_is_invalid_naming_data(damaged):
    with pytest.raises(InvalidEvent) as refused:
        REGISTRY.stored_wire("page_viewed", 1, damaged)

    assert [error.field for error in refused.value.errors] == ["data"]


ODD_IDS = [
    "0b6f,5c1e-0000-4000-8000-00000000000",  # 36 plain characters, a comma among them: served as stored
    'quote"and\\backslash-0000-4000-8000-0',  # 36 characters that JSON escapes: decoded, and refused
]


@pytest.mark.parametrize("event_id", ODD_IDS)
def test_stored_wire__an_altered_body_that_is_still_json_is_served_as_json_or_refused(event_id):
    # given a stored body altered in the file (verify names such rows), with an odd event_id
    assert len(event_id) == 36
    data = orjson.dumps({"event_id": event_id, "occurred_at": "2024-03-01T12:00:00Z", "anonymous_id": "a"})

    # when it is read out
    if event_id == ODD_IDS[0]:
        wire = orjson.loads(REGISTRY.stored_wire("page_viewed", 1, data))
        # then it is served as stored, with its type, and parses
        assert wire == {"event_id": event_id, "type": "page_viewed", **orjson.loads(data)}
    else:
        # then (an escape in the id: not spliced) validation names the stored body
        with pytest.raises(InvalidEvent) as refused:
            REGISTRY.stored_wire("page_viewed", 1, data)
        assert [error.field for error in refused.value.errors] == ["data"]


def test_current_version__needs_no_schema_version_key():
    body = order_v1(0)
    body.pop("schema_version")
    body["data"] = {"order_id": "o-1", "revenue": "9.99", "currency": "EUR"}

    assert REGISTRY.validate(body).data.revenue == Decimal("9.99")


def test_newer_than_known_schema_version__is_refused():
    body = order_v1(100)
    body["schema_version"] = 3

    with pytest.raises(InvalidEvent) as refused:
        REGISTRY.validate(body)

    assert refused.value.errors[0].field == "schema_version"
    assert "newer" in refused.value.errors[0].reason


@pytest.mark.parametrize("version", [0, -1, "2", True, 1.5])
def test_schema_version__must_be_a_positive_integer(version):
    body = order_v1(100)
    body["schema_version"] = version

    with pytest.raises(InvalidEvent) as refused:
        REGISTRY.validate(body)

    assert refused.value.errors[0].field == "schema_version"


def test_missing_upcaster__is_named():
    registry = default_registry()
    registry._upcasters.clear()

    with pytest.raises(InvalidEvent, match="no upcaster"):
        registry.validate(order_v1(100))


# --- registration ---------------------------------------------------------------------


def test_duplicate_type_name__is_refused():
    class FakeOrder(Touch):
        TYPE: ClassVar[str] = "order_placed"

    with pytest.raises(RegistryError, match="order_placed"):
        default_registry().register(FakeOrder)


def test_model_without_wire_name__is_refused():
    class Nameless(Touch):
        pass

    with pytest.raises(RegistryError, match="no TYPE"):
        default_registry().register(Nameless)


def test_duplicate_upcaster__is_refused():
    with pytest.raises(RegistryError, match="upcaster"):
        default_registry().upcaster("order_placed", 1)(lambda body: body)


def test_registering_the_same_model_twice__is_harmless():
    registry = default_registry()

    registry.register(WebinarAttended)
    registry.register(WebinarAttended)

    assert registry.names().count("webinar_attended") == 1


def test_new_touch_type__registered_by_a_team_validates_like_a_core_type():
    registry = default_registry()
    registry.register(WebinarAttended)

    event = registry.validate(webinar())

    assert isinstance(event, WebinarAttended) and event.kind == "touch"
    assert event.data.minutes_watched == 35
    assert event.stream == "anonymous-email:ab12"
    assert "webinar_attended" not in REGISTRY.names()  # the shared registry is untouched


def test_new_touch_type__inherits_the_envelope_rules():
    registry = default_registry()
    registry.register(WebinarAttended)

    with pytest.raises(InvalidEvent) as refused:
        registry.validate(webinar(channel=None, occurred_at="2024-02-02T15:00:00"))

    assert {e.field for e in refused.value.errors} == {"channel", "occurred_at"}


def test_plugins__entry_points_register_models_and_lists_of_models(monkeypatch):
    # importlib.metadata is the boundary here: installing a real plugin package is not possible in a test.
    class WebinarRegistered(Touch):
        TYPE: ClassVar[str] = "webinar_registered"
        type: Literal["webinar_registered"] = "webinar_registered"

    asked = []

    def entry_points(*, group):
        asked.append(group)
        return [FakeEntryPoint(WebinarAttended), FakeEntryPoint([WebinarRegistered])]

    monkeypatch.setattr("events.registry.metadata.entry_points", entry_points)
    registry = default_registry()

    loaded = registry.load_plugins()

    assert asked == [PLUGIN_ENTRY_POINT_GROUP]
    assert loaded == ["webinar_attended", "webinar_registered"]
    assert isinstance(registry.validate(webinar()), WebinarAttended)


def test_plugins__a_plugin_reusing_a_core_name_is_refused(monkeypatch):
    class Impostor(Touch):
        TYPE: ClassVar[str] = "page_viewed"

    monkeypatch.setattr("events.registry.metadata.entry_points", lambda *, group: [FakeEntryPoint(Impostor)])

    with pytest.raises(RegistryError, match="page_viewed"):
        default_registry().load_plugins()


# --- schemas and encoding ---------------------------------------------------------------


def test_json_schemas__cover_every_type_with_its_version():
    schemas = REGISTRY.json_schemas()

    assert set(schemas) == {model.TYPE for model in (*CORE_EVENT_TYPES, *TRACKING_EVENT_TYPES, *PRIVACY_EVENT_TYPES)}
    assert schemas["order_placed"]["x-schema-version"] == 2
    assert "revenue" in orjson.dumps(schemas["order_placed"]).decode()
    assert "occurred_at" in schemas["page_viewed"]["required"]


def test_encode_body__leaves_out_type_and_empty_fields_and_decodes_back():
    event = REGISTRY.validate(webinar(type="page_viewed", data={"url": "https://shop.example/x"}))

    body = encode_body(event)

    assert b'"type"' not in body and b"campaign" not in body
    assert REGISTRY.decode_stored("page_viewed", 1, body) == event


def test_encode_wire__round_trips_through_decode_json():
    event = REGISTRY.validate(order_v1(4200))

    assert REGISTRY.decode_json(encode_wire(event)) == event


@pytest.mark.parametrize(("raw", "reason"), [(b"{not json", "malformed JSON"), (b"[1, 2]", "an array")])
def test_decode_json__bad_documents_are_named(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        REGISTRY.decode_json(raw)


# --- the fast path: one pydantic call per current-version event ------------------------------


def demo_documents(customers: int = 150) -> list[dict]:
    from application.demo import generate  # every core type, as a realistic emitter sends them

    return list(generate(customers, seed=11))


def test_fast_path__decodes_every_demo_event_exactly_as_the_general_path():
    registry = default_registry()
    documents = demo_documents()
    assert registry.fast_validator() is not None

    for document in documents:
        fast = registry.decode_json(orjson.dumps(document))
        general = registry.model(document["type"]).model_validate(document)
        assert (type(fast), fast) == (type(general), general)
        assert encode_body(fast) == encode_body(general)
    assert {d["type"] for d in documents} >= {m.TYPE for m in CORE_EVENT_TYPES} - {"support_ticket_opened", "customers_merged"}


def test_fast_path__invalid_and_old_documents_still_get_the_general_paths_answers():
    registry = default_registry()
    bad_channel = {**demo_documents(3)[0], "channel": "Instagram"}

    with pytest.raises(InvalidEvent) as refused:
        registry.decode_json(orjson.dumps(bad_channel))
    upcast = registry.decode_json(orjson.dumps(order_v1(1999)))

    assert [e.field for e in refused.value.errors] == ["channel"]
    assert upcast.data.revenue == Decimal("19.99")


def test_fast_path__is_rebuilt_when_a_type_is_registered():
    registry = default_registry()
    registry.fast_validator()
    registry.register(WebinarAttended)
    wire = {"event_id": str(uuid.uuid4()), "type": "webinar_attended", "occurred_at": "2024-01-01T00:00:00Z",
            "anonymous_id": "cookie:1", "channel": "webinar", "data": {"webinar_id": "w-1"}}

    event = registry.decode_json(orjson.dumps(wire))

    assert isinstance(event, WebinarAttended)


def test_fast_path__a_model_whose_type_is_not_a_literal_turns_it_off_without_changing_answers():
    class FreeTyped(Touch):
        TYPE: ClassVar[str] = "free_typed"

    registry = default_registry()
    registry.register(FreeTyped)
    wire = {"event_id": str(uuid.uuid4()), "type": "free_typed", "occurred_at": "2024-01-01T00:00:00Z",
            "anonymous_id": "cookie:1", "channel": "web"}

    assert registry.fast_validator() is None
    assert isinstance(registry.decode_json(orjson.dumps(wire)), FreeTyped)


def test_registry__pickles_without_its_cached_validator_and_works_after():
    import pickle

    registry = default_registry()
    registry.fast_validator()

    copy = pickle.loads(pickle.dumps(registry))

    assert copy.names() == registry.names() and copy.sendable_to_process()
    assert copy.decode_json(orjson.dumps(demo_documents(2)[0])).TYPE


def test_fast_decode_array__decodes_a_valid_array_and_leaves_anything_else_to_the_general_path():
    registry = default_registry()
    documents = demo_documents(20)
    valid = orjson.dumps(documents)

    events = registry.fast_decode_array(valid)

    assert events == [registry.decode_json(orjson.dumps(d)) for d in documents]
    assert registry.fast_decode_array(b"[]") is None
    assert registry.fast_decode_array(valid[:-1]) is None  # malformed
    assert registry.fast_decode_array(orjson.dumps([*documents, {**documents[0], "channel": "X"}])) is None
    assert registry.fast_decode_array(orjson.dumps([order_v1(100)])) is None  # an older version: upcast item by item


@pytest.mark.parametrize("entry", ["decode_json", "validate"])
def test_fast_path__a_time_with_another_offset_is_converted_to_utc_as_on_the_general_path(entry):
    registry = default_registry()
    document = {**demo_documents(2)[0], "occurred_at": "2024-03-01T12:30:00.25+02:00"}
    decode = registry.decode_json if entry == "decode_json" else registry.validate

    event = decode(orjson.dumps(document) if entry == "decode_json" else document)

    assert event.occurred_at.utcoffset().total_seconds() == 0
    assert event.occurred_at.isoformat() == "2024-03-01T10:30:00.250000+00:00"
    assert encode_body(event) == encode_body(registry.model(document["type"]).model_validate(document))


@pytest.mark.parametrize("entry", ["decode_json", "validate"])
def test_fast_path__an_event_without_identity_is_refused_naming_customer_id(entry):
    registry = default_registry()
    document = {k: v for k, v in demo_documents(2)[0].items() if k not in ("customer_id", "anonymous_id")}
    decode = registry.decode_json if entry == "decode_json" else registry.validate

    with pytest.raises(InvalidEvent) as refused:
        decode(orjson.dumps(document) if entry == "decode_json" else document)

    assert [e.field for e in refused.value.errors] == ["customer_id"]


@pytest.mark.parametrize("method", ["fast_decode_array", "fast_decode_lines"])
def test_fast_batches__leave_events_failing_the_envelope_checks_to_the_item_by_item_path(method):
    registry = default_registry()
    documents = demo_documents(5)
    anonymous = {k: v for k, v in documents[1].items() if k not in ("customer_id", "anonymous_id")}
    offset = {**documents[2], "occurred_at": "2024-03-01T12:30:00+02:00"}

    def decode(items):
        if method == "fast_decode_array":
            return registry.fast_decode_array(orjson.dumps(items))
        return registry.fast_decode_lines(orjson.dumps(item) for item in items)

    assert decode(documents) == [registry.decode_json(orjson.dumps(d)) for d in documents]
    assert decode([*documents, anonymous]) is None
    assert decode([*documents, offset]) is None


def test_fast_path__keeps_every_other_validator_of_a_model():
    registry = default_registry()
    merged_into_itself = {"event_id": str(uuid.uuid4()), "type": "customers_merged",
                          "occurred_at": "2024-01-01T00:00:00Z", "customer_id": "anna",
                          "data": {"duplicate_customer_id": "anna"}}

    with pytest.raises(InvalidEvent):
        registry.decode_json(orjson.dumps(merged_into_itself))
    assert registry.fast_decode_array(orjson.dumps([merged_into_itself])) is None


def test_decode_logged__gives_the_stored_event_with_where_and_when_the_log_holds_it():
    current = REGISTRY.validate(order_v1(750))  # upcast to the current version
    recorded_at = current.occurred_at

    logged = REGISTRY.decode_logged("order_placed", 2, encode_body(current), 9, recorded_at, current.stream)

    assert (logged.position, logged.recorded_at, logged.stream, logged.event) == (
        9, recorded_at, current.stream, current)


def test_decode_logged__an_older_version_is_upcast_after_the_current_one_was_seen():
    registry = default_registry()
    current = registry.validate(order_v1(750))
    old_body = orjson.dumps({k: v for k, v in order_v1(500).items() if k not in ("type", "schema_version")})

    registry.decode_logged("order_placed", 2, encode_body(current), 1, current.occurred_at, current.stream)
    old = registry.decode_logged("order_placed", 1, old_body, 2, current.occurred_at, current.stream)

    assert old.event.data.revenue == Decimal("5.00")
