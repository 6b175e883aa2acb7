"""POST /v1/events through the in-process client: formats, all-or-nothing, duplicates, 4xx errors."""

import gzip

import orjson
import pytest
from fastapi.testclient import TestClient

from consumers.api.app import create_app
from tests.conftest import admin_headers, stored_stream

NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}


def post_ndjson(api, items, separator=b"\n"):
    return api.post("/v1/events", content=separator.join(orjson.dumps(i) for i in items), headers=NDJSON)


def test_single_object__is_stored_and_answered_with_its_position(api, store, settings, make_event):
    event = make_event(anonymous_id="cookie:one")

    response = api.post("/v1/events", json=event)

    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (1, 0)
    (result,) = body["results"]
    assert result["event_id"] == event["event_id"]
    assert result["stream"] == stored_stream(settings.data, "anonymous-cookie:one")  # sealed: its pseudonym
    assert result["stream_version"] == 0 and result["duplicate"] is False
    assert result["position"] == store.head_position()


def test_array__every_item_is_stored_and_results_keep_request_order(api, store, make_event):
    events = [make_event(), make_event("order_placed"), make_event("email_opened", channel="email")]

    response = api.post("/v1/events", json=events)

    assert response.status_code == 200
    assert [r["event_id"] for r in response.json()["results"]] == [e["event_id"] for e in events]
    assert len(list(store.read_all())) == 3


def test_ndjson__one_event_per_line_blank_lines_and_crlf_allowed(api, store, make_event):
    events = [make_event(), make_event(), make_event()]
    body = b"\r\n".join(orjson.dumps(e) for e in events) + b"\r\n\r\n"

    response = api.post("/v1/events", content=body, headers=NDJSON)

    assert response.status_code == 200
    assert response.json()["accepted"] == 3
    assert len(list(store.read_all())) == 3


def test_content_type_with_charset__is_accepted(api, make_event):
    response = api.post("/v1/events", content=orjson.dumps(make_event()),
                        headers={"content-type": "application/json; charset=utf-8"})

    assert response.status_code == 200


def test_invalid_items__422_lists_every_bad_index_field_and_reason_and_stores_nothing(api, store, make_event):
    items = [
        make_event(),
        make_event(occurred_at="2024-03-01T12:00:00"),
        make_event(),
        make_event(channel="Instagram"),
        make_event(anonymous_id=None),
    ]

    response = api.post("/v1/events", json=items)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_events" and body["accepted"] == 0
    assert [item["index"] for item in body["invalid"]] == [1, 3, 4]
    fields = [[e["field"] for e in item["errors"]] for item in body["invalid"]]
    assert fields == [["occurred_at"], ["channel"], ["customer_id"]]
    assert all(e["reason"] for item in body["invalid"] for e in item["errors"])
    assert store.head_position() is None


def test_invalid_ndjson_line__is_reported_by_index_and_nothing_is_stored(api, store, make_event):
    response = post_ndjson(api, [make_event(), make_event(type="order_placed", data={})])

    assert response.status_code == 422
    (item,) = response.json()["invalid"]
    assert item["index"] == 1
    assert {e["field"] for e in item["errors"]} == {"data.order_id", "data.revenue", "data.currency"}
    assert store.head_position() is None


def test_unknown_type__is_a_422_naming_the_type_field(api, make_event):
    response = api.post("/v1/events", json=make_event(type="tiktok_danced"))

    assert response.status_code == 422
    (error,) = response.json()["invalid"][0]["errors"]
    assert error["field"] == "type" and "tiktok_danced" in error["reason"]


def test_non_object_items__are_invalid_items_not_server_errors(api):
    response = api.post("/v1/events", json=[1, None, [2], "x"])

    assert response.status_code == 422
    assert [item["index"] for item in response.json()["invalid"]] == [0, 1, 2, 3]


def test_duplicate_in_one_request__stored_once_and_second_reported_with_the_same_position(api, store, make_event):
    event = make_event()

    response = api.post("/v1/events", json=[event, event])

    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (1, 1)
    first, second = body["results"]
    assert (first["duplicate"], second["duplicate"]) == (False, True)
    assert second["position"] == first["position"]
    assert len(list(store.read_all())) == 1


def test_duplicate_in_a_later_request__reported_with_the_original_position(api, store, make_event):
    event = make_event()
    original = api.post("/v1/events", json=event).json()["results"][0]
    api.post("/v1/events", json=make_event())

    retry = api.post("/v1/events", json=[event, make_event()]).json()

    assert retry["results"][0] == {**original, "duplicate": True}
    assert (retry["accepted"], retry["duplicates"]) == (1, 1)
    assert len(list(store.read_all())) == 3


def test_malformed_json__400_naming_line_column_and_offset(api, store):
    response = api.post("/v1/events", content=b'[\n  {"type": "page_viewed",}\n]',
                        headers={"content-type": "application/json"})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "malformed_json"
    assert body["line"] == 2 and body["offset"] > 0
    assert "line 2" in body["detail"]
    assert store.head_position() is None


def test_malformed_ndjson__400_names_every_bad_line(api, store, make_event):
    body = b"\n".join([orjson.dumps(make_event()), b"{oops", orjson.dumps(make_event()), b"[1,"])

    response = api.post("/v1/events", content=body, headers=NDJSON)

    assert response.status_code == 400
    assert [m["line"] for m in response.json()["malformed"]] == [2, 4]
    assert "line 2" in response.json()["detail"]
    assert store.head_position() is None


def test_body_that_is_not_utf8__is_a_400(api):
    response = api.post("/v1/events", content=b'{"type": "\xff\xfe"}', headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


@pytest.mark.parametrize("body", [b"", b"   \n", b"[]"])
def test_empty_body_or_array__is_a_400(api, body):
    response = api.post("/v1/events", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"] == "empty_body"


def test_ndjson_with_only_blank_lines__is_a_400(api):
    response = api.post("/v1/events", content=b"\n\n", headers=NDJSON)

    assert response.status_code == 400


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_unsupported_content_type__is_a_415_naming_the_accepted_types(api, make_event, content_type):
    response = api.post("/v1/events", content=orjson.dumps(make_event()), headers={"content-type": content_type})

    assert response.status_code == 415
    assert "application/x-ndjson" in response.json()["detail"]


def make_small_api(store, settings, limit):
    return TestClient(create_app(store=store, settings=settings.model_copy(update={"max_body_bytes": limit})),
                      headers=admin_headers(settings.data))


def test_body_over_the_limit__is_a_413_and_nothing_is_stored(store, settings, make_event):
    api = make_small_api(store, settings, 1000)
    events = [make_event() for _ in range(10)]

    response = api.post("/v1/events", json=events)

    assert response.status_code == 413
    assert response.json()["limit"] == 1000
    assert store.head_position() is None


def test_streamed_body_without_length_over_the_limit__is_a_413(store, settings, make_event):
    api = make_small_api(store, settings, 1000)
    line = orjson.dumps(make_event()) + b"\n"

    response = api.post("/v1/events", content=iter([line] * 10), headers=NDJSON)

    assert response.status_code == 413
    assert store.head_position() is None


def test_body_at_the_limit__is_accepted(store, settings, make_event):
    body = orjson.dumps(make_event())
    api = make_small_api(store, settings, len(body))

    response = api.post("/v1/events", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 200


def test_store_unavailable__is_a_503(api, store, make_event):
    store.close()

    response = api.post("/v1/events", json=make_event())

    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"


def test_old_version_body_too_malformed_to_upcast__is_a_422_not_a_500(api, make_event):
    event = make_event("order_placed", schema_version=1, data=[1, 2])

    response = api.post("/v1/events", json=event)

    assert response.status_code == 422
    assert response.json()["invalid"][0]["errors"][0]["field"] == "schema_version"


def test_old_version_body__is_upcast_and_stored_at_the_current_version(api, store, make_event):
    event = make_event("order_placed", schema_version=1, data={"order_id": "o-7", "total_cents": 1999, "currency": "EUR"})

    response = api.post("/v1/events", json=event)

    assert response.status_code == 200
    (recorded,) = store.read_all()
    assert recorded.schema_version == 2 and b'"revenue":"19.99"' in recorded.data


def test_gzip_body__is_decompressed_and_stored(api, store, make_event):
    events = [make_event() for _ in range(3)]
    body = gzip.compress(b"\n".join(orjson.dumps(e) for e in events))

    response = api.post("/v1/events", content=body, headers={**NDJSON, "content-encoding": "gzip"})

    assert response.status_code == 200
    assert len(list(store.read_all())) == 3


def test_gzip_body_inflating_past_the_limit__is_a_413(store, settings):
    api = make_small_api(store, settings, 10_000)
    bomb = gzip.compress(b"[" + b" " * 1_000_000 + b"]")

    response = api.post("/v1/events", content=bomb, headers={"content-type": "application/json",
                                                              "content-encoding": "gzip"})

    assert response.status_code == 413


def test_corrupt_gzip__is_a_400_and_unknown_encoding_a_415(api):
    corrupt = api.post("/v1/events", content=b"not gzip", headers={"content-encoding": "gzip", **JSON})
    brotli = api.post("/v1/events", content=b"{}", headers={"content-encoding": "br", **JSON})

    assert corrupt.status_code == 400 and corrupt.json()["error"] == "bad_content_encoding"
    assert brotli.status_code == 415


def test_uuid_text__is_the_canonical_uuid_form():
    from uuid import uuid4

    from consumers.api.event_routes import uuid_text

    ids = [uuid4() for _ in range(50)]

    assert [uuid_text(event_id.bytes) for event_id in ids] == [str(event_id) for event_id in ids]
