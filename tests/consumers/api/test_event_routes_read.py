"""GET /v1/events paging, /v1/schemas, and no 500 for any body."""

import sqlite3

import orjson
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from consumers.api.app import create_app
from events.registry import REGISTRY, EventRegistry
from tests.conftest import admin_headers, stored_stream


def fill(api, make_event, count):
    """``count`` events, one request each, so log order is request order."""
    events = [make_event(anonymous_id=f"cookie:{i % 3}") for i in range(count)]
    for event in events:
        api.post("/v1/events", json=event)
    return events


def test_read_log__events_in_global_order_with_positions_and_recorded_at(api, settings, make_event):
    events = fill(api, make_event, 5)

    page = api.get("/v1/events").json()

    assert [e["event"]["event_id"] for e in page["events"]] == [e["event_id"] for e in events]
    positions = [e["position"] for e in page["events"]]
    assert positions == sorted(positions)
    first = page["events"][0]
    assert first["stream"] == stored_stream(settings.data, "anonymous-cookie:0") and first["stream_version"] == 0
    assert first["recorded_at"].endswith("Z")
    assert first["event"]["type"] == "page_viewed" and first["event"]["occurred_at"] == "2024-03-01T12:00:00Z"
    assert len(first["hash"]) == 64
    assert page["has_more"] is False


def test_read_log__paging_with_next_position_visits_every_event_once(api, make_event):
    events = fill(api, make_event, 7)
    seen, position, pages = [], 0, 0

    while True:
        page = api.get("/v1/events", params={"from_position": position, "limit": 3}).json()
        seen += [e["event"]["event_id"] for e in page["events"]]
        position = page["next_position"]
        pages += 1
        if not page["has_more"]:
            break

    assert seen == [e["event_id"] for e in events]
    assert pages == 3


def test_read_log__from_position_is_inclusive(api, make_event):
    fill(api, make_event, 3)
    second = api.get("/v1/events").json()["events"][1]

    page = api.get("/v1/events", params={"from_position": second["position"]}).json()

    assert page["events"][0] == second


def test_read_log__past_the_head_is_an_empty_page_that_keeps_the_position(api, make_event):
    fill(api, make_event, 2)

    page = api.get("/v1/events", params={"from_position": 10_000}).json()

    assert page == {"events": [], "next_position": 10_000, "has_more": False}


def test_read_log__bad_parameters_are_a_422_naming_each_parameter(api):
    response = api.get("/v1/events", params={"from_position": "-1", "limit": "lots"})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_parameters"
    assert {item["parameter"] for item in body["invalid"]} == {"from_position", "limit"}


def test_read_log__limit_above_ten_thousand_is_refused(api):
    response = api.get("/v1/events", params={"limit": 10_001})

    assert response.status_code == 422
    assert response.json()["invalid"][0]["parameter"] == "limit"


def test_schemas__every_registered_type_with_its_version(api):
    schemas = api.get("/v1/schemas").json()

    assert sorted(schemas) == REGISTRY.names()
    assert schemas["order_placed"]["x-schema-version"] == 2
    assert "occurred_at" in schemas["ad_clicked"]["properties"]


def test_schema_of_one_type__and_404_for_an_unknown_one(api):
    assert api.get("/v1/schemas/identity_linked").json()["x-schema-version"] == 1

    response = api.get("/v1/schemas/nope")

    assert response.status_code == 404
    assert "order_placed" in response.json()["known"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(REGISTRY.names() + ["x"])},
    optional={"event_id": st.uuids().map(str) | st.text(max_size=5), "occurred_at": st.text(max_size=30),
              "customer_id": json_values, "anonymous_id": json_values, "channel": json_values, "data": json_values,
              "schema_version": st.sampled_from([1, 2]) | json_values},
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200) | json_values.map(orjson.dumps) | st.lists(event_like, max_size=3).map(orjson.dumps),
       ndjson=st.booleans())
def test_any_body__never_answers_a_server_error(api, body, ndjson):
    content_type = "application/x-ndjson" if ndjson else "application/json"

    response = api.post("/v1/events", content=body, headers={"content-type": content_type})

    assert response.status_code < 500, response.text


def test_read_log__an_event_of_a_type_no_longer_registered_is_shown_as_stored(store, settings, make_event):
    TestClient(create_app(store=store, settings=settings),
               headers=admin_headers(settings.data)).post("/v1/events", json=make_event(channel="email"))
    without_types = EventRegistry()
    api = TestClient(create_app(store=store, settings=settings, registry=without_types),
                     headers=admin_headers(settings.data))

    response = api.get("/v1/events")

    assert response.status_code == 200
    (logged,) = response.json()["events"]
    assert logged["event"] is None
    assert logged["stored"]["type"] == "page_viewed" and logged["stored"]["data"]["channel"] == "email"
    assert "page_viewed" in logged["decode_error"]


DAMAGED = b'{"event_id":"0b6f5c1e-0000-4000-8000-000000000000","occurred_at":"20'  # cut short


def test_read_log__a_damaged_row_is_shown_as_stored_text_and_the_page_stays_json(api, store, make_event):
    # given two stored events, the first's body overwritten in the file with bytes that are not JSON
    fill(api, make_event, 2)
    first, second = api.get("/v1/events").json()["events"]
    with sqlite3.connect(store.path) as raw:
        raw.execute("UPDATE events SET data = ? WHERE position = ?", (DAMAGED, first["position"]))

    # when the log is read
    response = api.get("/v1/events")

    # then the damaged one is named and shown as text, the other is unchanged
    assert response.status_code == 200
    damaged, intact = response.json()["events"]
    assert damaged["event"] is None and damaged["stored"]["data"] == DAMAGED.decode()
    assert damaged["decode_error"].startswith("data:")
    assert intact == second
