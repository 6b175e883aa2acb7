"""The API app: /healthz (components, readiness of the views), the OpenAPI document, and the pool
that reads the log."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from fastapi.testclient import TestClient

from application.ingest import Ingestor
from application.live_views import LiveViews
from application.store_feed import StoreFeed
from consumers.api.app import LOG_READ_THREADS, create_app, redact_url
from tests.conftest import bearer, make_key
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from tests.conftest import wire_event


def test_healthz__ok_with_the_store_count_and_head(api, make_event):
    api.post("/v1/events", json=[make_event() for _ in range(4)])

    response = api.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"]["store"]["status"] == "ok"
    assert body["components"]["store"]["count"] == 4
    assert body["components"]["store"]["head_position"] == api.get("/v1/events").json()["events"][-1]["position"]


def test_healthz__registered_components_are_reported_and_a_failing_one_degrades(store, settings, auth_headers):
    def broken():
        raise ConnectionError("broker unreachable")

    checks = {"kafka": lambda: {"bootstrap": "127.0.0.1:9092"}, "relay": lambda: {"status": "degraded", "lag": 9},
              "worker": broken}
    api = TestClient(create_app(store=store, settings=settings, health_checks=checks), headers=auth_headers)

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


# --- readiness: the views against the log's head (touchpoints serve: views from the store) -----


@contextmanager
def serving_views(store, settings, *, poll_interval: float = 0.05, **live_views_options):
    """The API as ``touchpoints serve`` runs it without Kafka: live views fed from the store."""
    views = LiveViews(**live_views_options)
    feed = StoreFeed(store, views, poll_interval=poll_interval).start()
    try:
        with TestClient(create_app(store=store, settings=settings, views=views,
                                   health_checks={"view_feed": feed.stats}),
                        headers=bearer(make_key(settings.data, "read"))) as client:
            yield client, views, feed
    finally:
        feed.stop()
        views.close()


def append_from_another_writer(store, count: int) -> None:
    """Append as a backfill in another process would: the feed sees it when it next polls."""
    with SQLiteEventStore(store.path) as writer:
        Ingestor(writer).append([REGISTRY.validate(wire_event()) for _ in range(count)])


def test_healthz__views_behind_the_head_are_catching_up_with_the_gap_and_not_ready(store, settings):
    # given views that hold the log's first 3 events and poll for others' appends once an hour
    Ingestor(store).append([REGISTRY.validate(wire_event()) for _ in range(3)])
    with serving_views(store, settings, poll_interval=3600, background=False) as (api, views, feed):
        assert feed.wait_until_caught_up(10)
        held = views.position

        # when another writer appends 2 more
        append_from_another_writer(store, 2)
        body = api.get("/healthz").json()

    # then the views say how far behind they are; nothing is broken, so status stays ok
    assert body["components"]["views"] == {
        "status": "catching_up", "position": held, "head": store.head_position(), "behind": 2, "folded": held,
    }
    assert body["status"] == "ok"
    assert body["ready"] is False


def test_healthz__views_that_reached_the_head_are_ok_and_ready(store, settings):
    # given the API serving views from the store
    with serving_views(store, settings) as (api, views, feed):
        # when another writer appends and the feed folds it
        append_from_another_writer(store, 5)
        deadline = time.monotonic() + 10
        while (body := api.get("/healthz").json())["components"]["views"]["status"] != "ok":
            assert time.monotonic() < deadline, f"the views never caught up: {body}"
            time.sleep(0.02)

    # then they report the head as their position, and the API is ready
    views_report = body["components"]["views"]
    assert views_report["position"] == views_report["head"] == store.head_position()
    assert views_report["behind"] == 0
    assert body["status"] == "ok" and body["ready"] is True


def test_healthz__folded_events_whose_documents_are_not_refreshed_yet_are_still_catching_up(store, settings):
    # given views whose default documents were computed at the log's first 3 events, and a
    # refresher that waits an hour before recomputing them
    Ingestor(store).append([REGISTRY.validate(wire_event()) for _ in range(3)])
    with serving_views(store, settings, refresh_delay=3600) as (api, views, feed):
        assert feed.wait_until_caught_up(10)
        views.refresh()
        computed_at = views.position

        # when 2 more events are folded
        Ingestor(store).append([REGISTRY.validate(wire_event()) for _ in range(2)])
        assert feed.wait_until_caught_up(10)
        report = api.get("/healthz").json()["components"]["views"]
        served = api.get("/v1/funnel")

    # then the views are catching up: readers still get the documents of the first 3
    assert report["status"] == "catching_up"
    assert report["folded"] == report["head"] == store.head_position()
    assert report["position"] == computed_at and report["behind"] == 2
    assert served.headers["X-Touchpoints-Position"] == str(computed_at)


def test_healthz__an_empty_log_is_caught_up_by_views_that_hold_nothing(store, settings):
    with serving_views(store, settings) as (api, views, feed):
        body = api.get("/healthz").json()

    assert body["components"]["views"] == {"status": "ok", "position": None, "head": None, "behind": 0,
                                           "folded": None}
    assert body["ready"] is True


def test_healthz__a_starting_component_keeps_the_status_ok_but_not_ready(store, settings, auth_headers):
    checks = {"views": lambda: {"status": "starting", "waiting_for": "the journey processor"}}
    api = TestClient(create_app(store=store, settings=settings, health_checks=checks), headers=auth_headers)

    body = api.get("/healthz").json()

    assert body["status"] == "ok"
    assert body["ready"] is False
    assert body["components"]["views"] == {"status": "starting", "waiting_for": "the journey processor"}
