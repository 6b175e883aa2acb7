"""The API app: /healthz, the OpenAPI document, and the pool that reads the log."""

import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from consumers.api.app import LOG_READ_THREADS, create_app, redact_url


def test_healthz__ok_with_the_store_count_and_head(api, make_event):
    api.post("/v1/events", json=[make_event() for _ in range(4)])

    response = api.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"]["store"]["status"] == "ok"
    assert body["components"]["store"]["count"] == 4
    assert body["components"]["store"]["head_position"] == api.get("/v1/events").json()["events"][-1]["position"]


def test_healthz__registered_components_are_reported_and_a_failing_one_degrades(store, settings):
    def broken():
        raise ConnectionError("broker unreachable")

    checks = {"kafka": lambda: {"bootstrap": "127.0.0.1:9092"}, "relay": lambda: {"status": "degraded", "lag": 9},
              "worker": broken}
    api = TestClient(create_app(store=store, settings=settings, health_checks=checks))

    body = api.get("/healthz").json()

    assert body["status"] == "degraded"
    assert body["components"]["kafka"] == {"status": "ok", "bootstrap": "127.0.0.1:9092"}
    assert body["components"]["relay"] == {"status": "degraded", "lag": 9}
    assert body["components"]["worker"]["status"] == "down"
    assert "broker unreachable" in body["components"]["worker"]["error"]


def test_healthz__a_closed_store_is_reported_down_not_a_500(api, store):
    store.close()

    response = api.get("/healthz")

    assert response.status_code == 200
    assert response.json()["components"]["store"]["status"] == "down"


def test_redact_url__hides_passwords():
    assert redact_url("esdb://admin:changeit@db:2113?tls=false") == "esdb://admin:***@db:2113?tls=false"
    assert redact_url("sqlite:///data/events.db") == "sqlite:///data/events.db"


def test_openapi__documents_the_routes_with_summaries(api):
    document = api.get("/openapi.json").json()

    post = document["paths"]["/v1/events"]["post"]
    assert post["summary"].startswith("Ingest")
    assert {"200", "400", "413", "415", "422", "503"} <= set(post["responses"])
    assert "application/x-ndjson" in post["requestBody"]["content"]
    assert document["paths"]["/healthz"]["get"]["summary"]
    assert api.get("/docs").status_code == 200


def test_read_log__pages_are_read_on_the_small_log_read_pool_and_concurrent_reads_answer_alike(
    api, store, make_event, monkeypatch
):
    # given a log, and a store that notes which thread reads it
    api.post("/v1/events", json=[make_event() for _ in range(6)])
    threads_used = set()
    read_all = store.read_all

    def recording_read_all(*args, **kwargs):
        threads_used.add(threading.current_thread().name)
        return read_all(*args, **kwargs)

    monkeypatch.setattr(store, "read_all", recording_read_all)
    alone = api.get("/v1/events", params={"limit": 4}).json()

    # when many clients read at once
    with ThreadPoolExecutor(12) as clients:
        together = list(clients.map(lambda _: api.get("/v1/events", params={"limit": 4}), range(24)))

    # then every answer is the same page, read only on the log-read threads
    assert all(response.status_code == 200 and response.json() == alone for response in together)
    assert threads_used and all(name.startswith("log-read") for name in threads_used)
    assert len(threads_used) <= LOG_READ_THREADS
