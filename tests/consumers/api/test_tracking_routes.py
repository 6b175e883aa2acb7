"""The tracking API over HTTP: Segment's paths and short paths, write keys, answers and limits,
with the real app, access store and SQLite store."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from application.access import Scope, open_access
from consumers.api.app import create_app
from consumers.api.tracking_routes import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES


@pytest.fixture
def access(settings):
    opened = open_access(settings.data)
    yield opened
    opened.close()


@pytest.fixture
def write_key(access) -> str:
    key, _ = access.create_key(name="website", scopes=frozenset({Scope.EMIT}))
    return key


@pytest.fixture
def client(store, settings, access) -> Iterator[TestClient]:
    with TestClient(create_app(store=store, settings=settings, access=access)) as opened:
        yield opened


def page(message_id: str = "m-1", **fields: Any) -> dict[str, Any]:
    return {"type": "page", "messageId": message_id, "anonymousId": "anon-1", "timestamp": "2026-12-05T11:00:00Z",
            "context": {"page": {"url": "https://shop.example/?utm_source=google&utm_medium=cpc"}}, **fields}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def stored_types(store) -> list[str]:
    return [recorded.type for recorded in store.read_all(0)]


def test_page__with_basic_auth_is_stored_and_answers_success(client, store, write_key):
    response = client.post("/v1/page", json=page(), headers=basic(write_key))

    assert (response.status_code, response.json()) == (200, {"success": True})
    [recorded] = list(store.read_all(0))
    assert recorded.type == "page_viewed" and orjson.loads(recorded.data)["channel"] == "paid_search"


@pytest.mark.parametrize(("path", "body", "stored"), [
    ("/t", {"event": "Signed Up", "userId": "c-1"}, "event_tracked"),
    ("/p", {"anonymousId": "anon-1"}, "page_viewed"),
    ("/s", {"name": "Home", "anonymousId": "anon-1"}, "page_viewed"),
    ("/i", {"userId": "c-1", "anonymousId": "anon-1"}, "identity_linked"),
    ("/g", {"groupId": "acme", "userId": "c-1"}, "group_associated"),
    ("/a", {"userId": "c-1", "previousId": "c-0"}, "customers_merged"),
])
def test_short_paths__take_text_plain_with_the_write_key_in_the_body(client, store, write_key, path, body, stored):
    response = client.post(path, content=orjson.dumps({**body, "writeKey": write_key, "messageId": path}),
                           headers={"Content-Type": "text/plain"})

    assert response.status_code == 200, response.text
    assert stored_types(store) == [stored]
    assert response.headers["access-control-allow-origin"] == "*"


def test_batch__stores_every_message_in_order(client, store, write_key):
    batch = [page("m-1"), {"type": "identify", "messageId": "m-2", "userId": "c-1", "anonymousId": "anon-1"},
             {"type": "track", "messageId": "m-3", "userId": "c-1", "event": "Order Completed",
              "properties": {"order_id": "o-1", "revenue": 20, "currency": "USD"}}]

    response = client.post("/v1/batch", json={"batch": batch, "writeKey": write_key})

    assert response.status_code == 200
    assert stored_types(store) == ["page_viewed", "identity_linked", "order_placed"]


def test_batch__a_retry_stores_nothing_twice(client, store, write_key):
    body = {"batch": [page("m-1"), page("m-2")], "writeKey": write_key}

    first = client.post("/v1/batch", json=body)
    retry = client.post("/v1/batch", json=body)

    assert first.status_code == retry.status_code == 200
    assert len(stored_types(store)) == 2


def test_batch__one_bad_message_is_named_and_nothing_is_stored(client, store, write_key):
    bad = {"type": "track", "messageId": "m-2", "userId": "c-1", "event": "Order Completed",
           "properties": {"order_id": "o-1", "revenue": 20}}

    response = client.post("/v1/batch", json={"batch": [page("m-1"), bad], "writeKey": write_key})

    assert response.status_code == 400
    [invalid] = response.json()["invalid"]
    assert (invalid["index"], invalid["messageId"], invalid["errors"][0]["field"]) == (1, "m-2", "properties.currency")
    assert stored_types(store) == []


def test_batch__a_message_the_registry_refuses_is_named_by_its_message_index(client, store, write_key):
    bad = page("m-2", anonymousId="x" * 300)

    response = client.post("/v1/batch", json={"batch": [page("m-1"), bad], "writeKey": write_key})

    assert response.status_code == 400 and response.json()["invalid"][0]["index"] == 1
    assert stored_types(store) == []


def test_no_key__is_401(client, store):
    response = client.post("/v1/page", json=page())

    assert response.status_code == 401 and stored_types(store) == []


def test_a_wrong_key__is_401(client, store):
    response = client.post("/t", content=orjson.dumps({**page(), "writeKey": "tp_00000000_" + "a" * 43}))

    assert response.status_code == 401


def test_a_read_key__is_403(client, access, store):
    key, _ = access.create_key(name="reader", scopes=frozenset({Scope.READ}))

    response = client.post("/v1/page", json=page(), headers=basic(key))

    assert response.status_code == 403 and stored_types(store) == []


def test_a_key_narrowed_to_other_types__is_403_and_stores_nothing(client, access, store):
    key, _ = access.create_key(name="pages only", scopes=frozenset({Scope.EMIT}), types=frozenset({"page_viewed"}))
    order = {"type": "track", "messageId": "m-2", "userId": "c-1", "event": "Order Completed",
             "properties": {"order_id": "o-1", "revenue": 20, "currency": "USD"}}

    response = client.post("/v1/batch", json={"batch": [page(), order]}, headers=basic(key))

    assert response.status_code == 403 and stored_types(store) == []


def test_a_message_over_32_kb__is_413(client, store, write_key):
    big = page(properties={"title": "x" * MAX_MESSAGE_BYTES})

    response = client.post("/v1/page", json=big, headers=basic(write_key))

    assert response.status_code == 413


def test_a_batch_item_over_32_kb__is_413_naming_it(client, store, write_key):
    big = page("m-2", properties={"note": "x" * MAX_MESSAGE_BYTES})

    response = client.post("/v1/batch", json={"batch": [page("m-1"), big], "writeKey": write_key})

    assert response.status_code == 413 and response.json()["indexes"] == [1]
    assert stored_types(store) == []


def test_a_batch_over_500_kb__is_413(client, store, write_key):
    batch = [page(f"m-{i}", properties={"note": "x" * 20_000}) for i in range(MAX_BATCH_BYTES // 20_000 + 1)]

    response = client.post("/v1/batch", json={"batch": batch, "writeKey": write_key})

    assert response.status_code == 413 and stored_types(store) == []


def test_malformed_json__is_400(client, write_key):
    response = client.post("/v1/track", content=b"{not json", headers=basic(write_key))

    assert response.status_code == 400 and response.json()["error"] == "malformed_json"


def test_an_empty_batch__is_400(client, write_key):
    response = client.post("/v1/batch", json={"batch": [], "writeKey": write_key})

    assert response.status_code == 400


def test_identify_with_one_id__is_accepted_and_stores_nothing(client, store, write_key):
    response = client.post("/v1/identify", json={"userId": "c-1", "traits": {"plan": "pro"}}, headers=basic(write_key))

    assert (response.status_code, response.json()) == (200, {"success": True})
    assert stored_types(store) == []


def test_overload__is_429_with_retry_after_and_rate_limit_reset(client, write_key):
    admission = client.app.state.admission
    admission.pending_requests, admission.pending_bytes = 1, admission.max_pending_bytes  # a request is in flight

    response = client.post("/v1/batch", json={"batch": [page()], "writeKey": write_key})

    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1 and response.headers["x-ratelimit-reset"]


def test_a_retry_whose_time_comes_from_the_receive_time__is_still_one_event(client, store, write_key):
    # no timestamp: occurred_at is derived from the receive time, which differs between the tries
    message = {**page("m-1"), "timestamp": None, "writeKey": write_key}

    answers = [client.post("/t", content=orjson.dumps(message)).status_code for _ in range(2)]
    answers.append(client.post("/v1/batch", json={"batch": [message, page("m-2")], "writeKey": write_key}).status_code)

    assert answers == [200, 200, 200]
    assert stored_types(store) == ["page_viewed", "page_viewed"]
