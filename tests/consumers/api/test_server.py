"""The ingestion API on a real uvicorn server (real sockets, real SQLite file), with httpx."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from consumers.api.app import create_app

pytestmark = pytest.mark.slow


@pytest.fixture
def url(store, settings, serve_app):
    app = create_app(store=store, settings=settings.model_copy(update={"max_body_bytes": 256 * 1024}))
    with serve_app(app) as base:
        yield base


def test_concurrent_clients__every_event_stored_once_with_distinct_positions(url, auth_headers, store, make_event):
    batches = [[make_event(anonymous_id=f"cookie:{n % 7}") for _ in range(50)] for n in range(12)]

    def post(batch):
        with httpx.Client(base_url=url, headers=auth_headers, timeout=30) as client:
            return client.post("/v1/events", json=batch)

    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(post, batches))

    assert [r.status_code for r in responses] == [200] * 12
    positions = [result["position"] for r in responses for result in r.json()["results"]]
    assert len(set(positions)) == 600
    stored_ids = {str(recorded.event_id) for recorded in store.read_all()}
    assert stored_ids == {event["event_id"] for batch in batches for event in batch}


def test_retry_after_success__reports_duplicates_with_the_original_positions(url, auth_headers, make_event):
    batch = [make_event() for _ in range(5)]
    with httpx.Client(base_url=url, headers=auth_headers) as client:
        first = client.post("/v1/events", json=batch).json()
        retry = client.post("/v1/events", json=batch).json()

    assert (retry["accepted"], retry["duplicates"]) == (0, 5)
    assert [r["position"] for r in retry["results"]] == [r["position"] for r in first["results"]]


def test_ndjson_then_read_back__the_log_holds_the_events_in_wire_form(url, auth_headers, make_event):
    events = [make_event(customer_id="c-7", anonymous_id=None) for _ in range(3)]
    body = b"\n".join(orjson.dumps(e) for e in events)
    with httpx.Client(base_url=url, headers=auth_headers) as client:
        posted = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
        page = client.get("/v1/events", params={"limit": 10}).json()

    assert posted.status_code == 200
    assert [e["event"]["event_id"] for e in page["events"]] == [e["event_id"] for e in events]
    assert [e["stream_version"] for e in page["events"]] == [0, 1, 2]


def test_declared_body_over_the_limit__is_refused_with_413_before_it_is_read(url, auth_headers, store):
    with httpx.Client(base_url=url, headers=auth_headers) as client:
        response = client.post("/v1/events", content=b"[" + b" " * (300 * 1024) + b"]",
                               headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert store.head_position() is None


def test_invalid_request_over_the_wire__422_and_nothing_stored(url, auth_headers, store, make_event):
    with httpx.Client(base_url=url, headers=auth_headers) as client:
        response = client.post("/v1/events", json=[make_event(), make_event(event_id="nope")])

    assert response.status_code == 422
    assert response.json()["invalid"][0]["errors"][0]["field"] == "event_id"
    assert store.head_position() is None


def test_healthz_and_docs__served(url, auth_headers):
    with httpx.Client(base_url=url, headers=auth_headers) as client:
        health = client.get("/healthz")
        docs = client.get("/docs")

    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
