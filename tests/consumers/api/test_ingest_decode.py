"""Large POST /v1/events bodies are decoded by worker processes: the answers (stored,
invalid, malformed) are exactly those of decoding in the server itself."""

import os
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from consumers.api.app import create_app
from consumers.api.ingest_decode import POOL_MIN_BYTES, BodyDecoder
from application.decoder_priority import DECODER_NICENESS
from events.registry import default_registry
from events.sqlite.store import SQLiteEventStore
from tests.conftest import admin_headers

NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    """Two servers over two stores: one decoding in a worker process, one inline."""
    folder: Path = tmp_path_factory.mktemp("pool")
    opened = {}
    from application.settings import Settings

    with SQLiteEventStore(folder / "pool.db") as pooled, SQLiteEventStore(folder / "inline.db") as inline:
        for name, store, workers in (("pool", pooled, 1), ("inline", inline, 0)):
            settings = Settings.from_env({"TOUCHPOINTS_DATA": str(folder), "TOUCHPOINTS_DEMO": "0"})
            settings = settings.model_copy(update={"ingest_workers": workers})
            opened[name] = TestClient(create_app(store=store, settings=settings),
                                      headers=admin_headers(settings.data)).__enter__()
        try:
            yield opened["pool"], opened["inline"]
        finally:
            for client in opened.values():
                client.__exit__(None, None, None)


def large(make_event, count=400, **fields):
    events = [make_event(campaign="spring-sale-with-a-long-campaign-name", **fields) for _ in range(count)]
    body = orjson.dumps(events)
    assert len(body) >= POOL_MIN_BYTES  # the size that goes to the pool
    return events, body


def test_large_array__is_stored_with_the_same_answer_as_inline_decoding(clients, make_event):
    pool, inline = clients
    events, body = large(make_event)

    answers = [client.post("/v1/events", content=body, headers={"content-type": "application/json"})
               for client in (pool, inline)]

    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert [r["event_id"] for r in answers[0].json()["results"]] == [e["event_id"] for e in events]
    assert pool.app.state.body_decoder._pool is not None  # it really went through a worker


def test_large_body_with_invalid_items__is_refused_whole_with_the_same_422(clients, make_event):
    pool, inline = clients
    events, _ = large(make_event)
    events[3]["channel"] = "Not A Channel"
    del events[250]["occurred_at"]
    body = b"\n".join(orjson.dumps(e) for e in events)
    head_before = pool.app.state.store.head_position()

    answers = [client.post("/v1/events", content=body, headers=NDJSON) for client in (pool, inline)]

    assert [a.status_code for a in answers] == [422, 422]
    assert answers[0].json() == answers[1].json()
    assert [item["index"] for item in answers[0].json()["invalid"]] == [3, 250]
    assert pool.app.state.store.head_position() == head_before


def test_large_malformed_body__gets_the_same_400(clients, make_event):
    pool, inline = clients
    _, body = large(make_event)
    body = body[:-2]  # cut inside the last object

    answers = [client.post("/v1/events", content=body, headers={"content-type": "application/json"})
               for client in (pool, inline)]

    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["error"] == "malformed_json"


def test_a_killed_worker__the_request_is_decoded_in_the_server_and_the_pool_starts_afresh(clients, make_event):
    pool, _ = clients
    decoder = pool.app.state.body_decoder
    decoder.start()
    for process in list(decoder._pool._processes.values()):
        process.kill()
        process.join()
    events, body = large(make_event)

    answer = pool.post("/v1/events", content=body, headers={"content-type": "application/json"})
    again = pool.post("/v1/events", content=large(make_event)[1], headers={"content-type": "application/json"})

    assert answer.status_code == 200 and answer.json()["accepted"] == len(events)
    assert again.status_code == 200 and decoder._pool is not None


@pytest.mark.parametrize("kind", ["array", "ndjson"])
def test_large_body_with_an_old_schema_version__is_upcast_like_any_other(clients, make_event, kind):
    pool, inline = clients
    events, _ = large(make_event)
    old_order = make_event("order_placed", customer_id=f"c-{kind}", schema_version=1,
                           data={"order_id": "o-9", "total_cents": 1250, "currency": "EUR"})
    events.append(old_order)
    body = orjson.dumps(events) if kind == "array" else b"\r\n".join(orjson.dumps(e) for e in events)
    headers = {"content-type": "application/json"} if kind == "array" else NDJSON

    answer = pool.post("/v1/events", content=body, headers=headers)

    assert answer.status_code == 200 and answer.json()["accepted"] == len(events)
    stored = list(pool.app.state.store.read_stream(f"customer-c-{kind}"))
    assert orjson.loads(stored[0].data)["data"]["revenue"] == "12.50"


def test_decoding_workers__run_niced_below_the_server():
    # given a body decoder with a worker process
    decoder = BodyDecoder(default_registry(), workers=1)
    try:
        decoder.start()
        # when the worker reports its niceness (os.nice(0) changes nothing and returns it)
        niceness = decoder._executor().submit(os.nice, 0).result(timeout=60)
        # then it is DECODER_NICENESS above this process's (capped at 19 by the kernel)
        assert niceness == min(19, os.nice(0) + DECODER_NICENESS)
    finally:
        decoder.close()
