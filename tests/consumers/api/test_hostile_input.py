"""Bad input to POST /v1/events, as an attacker or a broken emitter sends it: each a clear 4xx,
nothing stored."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from fastapi.testclient import TestClient

from consumers.api.app import create_app

JSON = {"content-type": "application/json"}
NDJSON = {"content-type": "application/x-ndjson"}
OVERFLOWING_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


def post(api, body: bytes, headers=JSON):
    return api.post("/v1/events", content=body, headers=headers)


@pytest.mark.parametrize("occurred_at", OVERFLOWING_TIMES)
@pytest.mark.parametrize("shape", ["object", "array", "ndjson"])
def test_time_that_leaves_the_calendar_in_utc__is_a_422_naming_occurred_at(api, store, make_event, occurred_at, shape):
    event = make_event(occurred_at=occurred_at)
    body, headers = {
        "object": (orjson.dumps(event), JSON),
        "array": (orjson.dumps([make_event(), event]), JSON),
        "ndjson": (orjson.dumps(make_event()) + b"\n" + orjson.dumps(event), NDJSON),
    }[shape]

    response = post(api, body, headers)

    assert response.status_code == 422
    (item,) = response.json()["invalid"]
    assert [error["field"] for error in item["errors"]] == ["occurred_at"]
    assert store.head_position() is None


@pytest.mark.parametrize("occurred_at", ["1712000000", 1712000000, 1712000000.5])
def test_epoch_seconds__are_refused_not_read_as_a_time(api, store, make_event, occurred_at):
    response = api.post("/v1/events", json=make_event(occurred_at=occurred_at))

    assert response.status_code == 422
    (error,) = response.json()["invalid"][0]["errors"]
    assert error["field"] == "occurred_at" and "RFC 3339" in error["reason"]
    assert store.head_position() is None


@pytest.mark.parametrize("occurred_at", ["9999-12-31T00:00:00Z", "1989-12-31T23:59:59Z"])
def test_time_outside_the_accepted_range__is_a_422_stating_the_range(api, store, make_event, occurred_at):
    response = api.post("/v1/events", json=[make_event(), make_event(occurred_at=occurred_at)])

    assert response.status_code == 422
    (item,) = response.json()["invalid"]
    (error,) = item["errors"]
    assert item["index"] == 1 and error["field"] == "occurred_at"
    assert "1990-01-01T00:00:00+00:00" in error["reason"] and "24 hours after" in error["reason"]
    assert store.head_position() is None


def test_time_a_day_ahead_of_the_receive_time__is_accepted_and_two_days_are_not(api, make_event):
    now = datetime.now(timezone.utc)
    soon = make_event(occurred_at=(now + timedelta(hours=23)).isoformat())
    later = make_event(occurred_at=(now + timedelta(hours=48)).isoformat())

    assert api.post("/v1/events", json=soon).status_code == 200
    assert api.post("/v1/events", json=later).status_code == 422


def test_many_invalid_items__the_422_lists_the_first_100_and_counts_them_all(api, store):
    response = api.post("/v1/events", json=[{}] * 5_000)

    assert response.status_code == 422
    body = response.json()
    assert [item["index"] for item in body["invalid"]] == list(range(100))
    assert body["invalid_count"] == 5_000 and "5000 of 5000" in body["detail"]
    assert len(response.content) < 20_000
    assert store.head_position() is None


def test_no_content_type__is_a_415_so_a_web_page_cannot_post_without_a_preflight(api, store, make_event):
    response = api.post("/v1/events", content=orjson.dumps(make_event()))

    assert response.status_code == 415
    assert "missing" in response.json()["detail"]
    assert store.head_position() is None


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_content_types_a_page_sends_without_a_preflight__are_415(api, store, make_event, content_type):
    response = post(api, orjson.dumps(make_event()), {"content-type": content_type})

    assert response.status_code == 415
    assert store.head_position() is None


@pytest.mark.parametrize("body", [
    b'{"event_id": "\xff\xfe"}',
    b'[{"type": "page_viewed", "channel": "\xc3\x28"}]',
])
def test_invalid_utf8__is_a_400(api, store, body):
    response = post(api, body)

    assert response.status_code == 400 and response.json()["error"] == "malformed_json"
    assert store.head_position() is None


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinity__are_refused(api, store, make_event, number):
    event = orjson.dumps(make_event("order_placed")).replace(b'"19.90"', number)

    response = post(api, event)

    assert response.status_code in (400, 422)
    assert store.head_position() is None


def test_deep_nesting__is_a_400_not_a_crash(api, store):
    response = post(api, b"[" * 100_000 + b"]" * 100_000)

    assert response.status_code == 400
    assert store.head_position() is None


def test_deep_nesting_inside_an_event__is_a_422(api, store, make_event):
    deep = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    body = orjson.dumps(make_event(data={"url": "x"})).replace(b'{"url":"x"}', deep)

    response = post(api, body)

    assert response.status_code in (400, 422)
    assert store.head_position() is None


@pytest.mark.parametrize("field", ["anonymous_id", "channel", "campaign", "source"])
def test_huge_string_in_a_field__is_a_422_naming_it(api, store, make_event, field):
    response = api.post("/v1/events", json=make_event(**{field: "x" * 1_000_000}))

    assert response.status_code == 422
    assert response.json()["invalid"][0]["errors"][0]["field"] == field
    assert store.head_position() is None


def test_huge_unknown_field__is_a_422(api, store, make_event):
    response = api.post("/v1/events", json=make_event(payload="x" * 1_000_000))

    assert response.status_code == 422
    assert store.head_position() is None


def test_oversized_body__is_a_413(store, settings, auth_headers, make_event):
    small = settings.model_copy(update={"max_body_bytes": 10_000})
    with TestClient(create_app(store=store, settings=small), headers=auth_headers) as api:
        response = post(api, orjson.dumps([make_event() for _ in range(100)]))

    assert response.status_code == 413
    assert store.head_position() is None


def test_event_id_sent_again_with_other_content__is_a_409_naming_the_original_and_stores_nothing(
    api, store, make_event
):
    original = make_event(channel="email")
    stored = api.post("/v1/events", json=original).json()["results"][0]
    before = store.head_position()

    response = api.post("/v1/events", json=[make_event(), {**original, "channel": "instagram"}])

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "conflicting_duplicate" and body["accepted"] == 0
    assert body["conflicts"] == [{"index": 1, "event_id": original["event_id"], "position": stored["position"]}]
    assert f"position {stored['position']}" in body["detail"]
    assert store.head_position() == before


def test_event_id_repeated_in_one_request_with_other_content__is_a_409(api, store, make_event):
    first = make_event()

    response = api.post("/v1/events", json=[first, {**first, "anonymous_id": "cookie:other"}])

    assert response.status_code == 409
    assert response.json()["conflicts"] == [{"index": 1, "event_id": first["event_id"], "first_index": 0}]
    assert store.head_position() is None


def test_true_repeat__stays_a_duplicate_with_the_original_position(api, store, make_event):
    event = make_event(occurred_at="2024-03-01T13:00:00+01:00")
    original = api.post("/v1/events", json=event).json()["results"][0]

    retry = api.post("/v1/events", json=[make_event(), {**event, "occurred_at": "2024-03-01T12:00:00Z"}])

    assert retry.status_code == 200
    assert retry.json()["results"][1] == {**original, "duplicate": True}
    assert retry.json()["accepted"] == 1


def test_retry_of_a_whole_stored_batch__is_all_duplicates(api, store, make_event):
    events = [make_event() for _ in range(50)]
    first = api.post("/v1/events", json=events).json()["results"]

    retry = api.post("/v1/events", json=events)

    assert retry.status_code == 200
    assert retry.json()["results"] == [{**result, "duplicate": True} for result in first]


def test_host_not_on_the_allow_list__is_a_421_before_anything_else(api, store, make_event):
    response = api.post("/v1/events", json=make_event(), headers={"host": "rebound.evil.example"})

    assert response.status_code == 421
    assert response.json()["error"] == "misdirected_request"
    assert store.head_position() is None


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "10.1.2.3", "api:8000",
                                  "app.localhost"])
def test_loopback_names_addresses_and_local_names__are_served(api, host):
    assert api.get("/v1/schemas", headers={"host": host}).status_code == 200


def test_configured_names__are_served(store, settings, auth_headers):
    named = settings.model_copy(update={"allowed_hosts": ("events.example.com",)})
    with TestClient(create_app(store=store, settings=named), headers=auth_headers) as api:
        assert api.get("/v1/schemas", headers={"host": "events.example.com"}).status_code == 200
        assert api.get("/v1/schemas", headers={"host": "other.example.com"}).status_code == 421


def test_no_cors_headers__are_sent_to_another_origin(api, make_event):
    response = api.post("/v1/events", json=make_event(), headers={"origin": "https://evil.example"})

    assert not any(name.lower().startswith("access-control-") for name in response.headers)


def test_from_position_beyond_64_bits__is_a_422(api):
    response = api.get("/v1/events", params={"from_position": 2**63})

    assert response.status_code == 422
    assert response.json()["invalid"][0]["parameter"] == "from_position"


def test_from_position_at_the_64_bit_maximum__is_an_empty_page(api, make_event):
    api.post("/v1/events", json=make_event())

    response = api.get("/v1/events", params={"from_position": 2**63 - 1})

    assert response.status_code == 200 and response.json()["events"] == []


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59-14:00", "1712000000", "9999-12-31T00:00:00Z"])
def test_a_large_body_decoded_by_the_worker_processes__refuses_the_same_times(api, store, make_event, occurred_at):
    events = [make_event(campaign="c" * 200) for _ in range(300)]
    events[123]["occurred_at"] = occurred_at
    body = orjson.dumps(events)
    assert len(body) >= 64 * 1024  # the size that goes to the decoding workers

    response = post(api, body)

    assert response.status_code == 422
    assert [item["index"] for item in response.json()["invalid"]] == [123]
    assert store.head_position() is None
