"""GET /metrics: the Prometheus text exposition format, checked line by line."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consumers.api.app import create_app
from tests.conftest import admin_headers
from consumers.api.metrics import MetricFamily, render
from application.settings import Settings
from application.live_views import LiveViews
from application.store_feed import StoreFeed
from events.sqlite.store import SQLiteEventStore

SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})?'
    r" (?P<value>[-+]?(?:[0-9.]+(?:e[-+]?[0-9]+)?|Inf|NaN))$"
)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[str, dict]:
    """Families by name: {"type", "help", "samples": [(name, labels, value)]}; asserts the format."""
    families: dict[str, dict] = {}
    current = None
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            current = families.setdefault(name, {"samples": []})
            current["help"] = line.split(" ", 3)[3]
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert not families.get(name, {}).get("samples"), f"TYPE after samples: {line}"
            families.setdefault(name, {"samples": []})["type"] = kind
            current = families[name]
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            assert current is not None and match["name"].startswith(next(k for k in families if families[k] is current))
            labels = dict(LABEL.findall(match["labels"] or ""))
            current["samples"].append((match["name"], labels, float(match["value"])))
    return families


@pytest.fixture(scope="module")
def client(demo_store_path: Path, tmp_path_factory: pytest.TempPathFactory):
    store = SQLiteEventStore(demo_store_path)
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path_factory.mktemp("metrics")), "TOUCHPOINTS_DEMO": "0"})
    views = LiveViews()
    feed = StoreFeed(store, views).start()
    feed.wait_until_caught_up(30)
    checks = {
        "relay": lambda: {"status": "ok", "lag": 12, "published": 3400},
        "worker": lambda: (_ for _ in ()).throw(RuntimeError("worker unreachable")),
        "view_feed": feed.stats,
    }
    app = create_app(store=store, settings=settings, views=views, health_checks=checks)
    with TestClient(app, headers=admin_headers(settings.data)) as test_client:
        yield test_client, store
    feed.stop()
    views.close()
    store.close()


def scrape(client: TestClient) -> dict[str, dict]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def test_metrics__the_exposition_is_well_formed_and_typed(client):
    api, _ = client
    api.get("/v1/funnel")

    families = scrape(api)

    assert families and all("type" in family and "help" in family for family in families.values())


def test_metrics__request_latencies_are_a_histogram_per_route_template(client):
    api, _ = client
    api.get("/v1/customers/nobody-1/timeline")
    api.get("/v1/customers/nobody-2/timeline")

    histogram = scrape(api)["touchpoints_http_request_duration_seconds"]

    assert histogram["type"] == "histogram"
    series = [s for s in histogram["samples"] if s[1].get("route") == "/v1/customers/{id}/timeline"]
    buckets = [value for name, labels, value in series if name.endswith("_bucket")]
    count = next(value for name, _, value in series if name.endswith("_count"))
    assert count == 2
    assert buckets == sorted(buckets) and buckets[-1] == count
    assert {labels["status"] for _, labels, _ in series} == {"404"}


def test_metrics__events_appended_counts_the_log(client):
    api, store = client

    samples = scrape(api)["touchpoints_events_appended_total"]["samples"]

    assert samples == [("touchpoints_events_appended_total", {}, float(store.count()))]


def test_metrics__the_views_position_is_the_log_head(client):
    api, store = client

    samples = scrape(api)["touchpoints_views_position"]["samples"]

    assert samples[0][2] == store.head_position()


def test_metrics__the_collectors_pauses_are_reported_by_generation(client):
    api, _ = client

    families = scrape(api)

    for name in ("touchpoints_gc_collections_total", "touchpoints_gc_pause_seconds_total",
                 "touchpoints_gc_longest_pause_seconds", "touchpoints_gc_collected_objects_total"):
        assert [labels["generation"] for _, labels, _ in families[name]["samples"]] == ["0", "1", "2"], name
    assert families["touchpoints_gc_collections_total"]["type"] == "counter"
    assert families["touchpoints_gc_frozen_objects"]["samples"][0][2] >= 0


def test_metrics__numeric_health_check_fields_become_gauges(client):
    api, _ = client

    families = scrape(api)

    assert families["touchpoints_relay_lag"]["samples"][0][2] == 12
    assert families["touchpoints_relay_published"]["samples"][0][2] == 3400


def test_metrics__a_caught_up_view_feed_reports_no_lag_no_backlog_and_every_event_applied(client):
    api, store = client
    # the views take the last batch a moment before the feed counts it as applied
    deadline = time.monotonic() + 10
    while (families := scrape(api))["touchpoints_view_feed_applied"]["samples"][0][2] < store.count():
        assert time.monotonic() < deadline, "the view feed never counted every event as applied"
        time.sleep(0.01)

    assert families["touchpoints_view_feed_lag_seconds"]["samples"][0][2] == 0
    assert families["touchpoints_view_feed_backlog_events"]["samples"][0][2] == 0
    assert families["touchpoints_view_feed_applied"]["samples"][0][2] == store.count()


def test_metrics__a_failing_health_check_reports_the_component_down_without_failing_the_scrape(client):
    api, _ = client

    up = {labels["component"]: value for _, labels, value in scrape(api)["touchpoints_component_up"]["samples"]}

    assert up["worker"] == 0
    assert up["relay"] == 1


def test_metrics__label_values_are_escaped():
    family = MetricFamily("touchpoints_example", "gauge", "An example.").add(1, {"route": 'a"b\\c\nd'})

    text = render([family])

    assert 'touchpoints_example{route="a\\"b\\\\c\\nd"} 1' in text
    assert parse(text)["touchpoints_example"]["samples"][0][1]["route"] == 'a\\"b\\\\c\\nd'
