"""The read API of the views over the demo data set in a real SQLite store."""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consumers.api.app import create_app
from application.live_views import LiveViews
from application.settings import Settings
from application.store_feed import load_views
from events.registry import decode_recorded
from events.sqlite.store import SQLiteEventStore
from projections import views as projection_views
from projections.attribution import MODELS
from tests.conftest import admin_headers

LIST_ROUTES = {
    "/v1/attribution": "rows",
    "/v1/first-contact": "rows",
    "/v1/conversion-time": "rows",
    "/v1/paths": "rows",
    "/v1/customers/top": "rows",
    "/v1/prospects": "rows",
    "/v1/funnel": "stages",
}


@pytest.fixture(scope="module")
def demo(demo_store_path: Path, tmp_path_factory: pytest.TempPathFactory):
    store = SQLiteEventStore(demo_store_path)
    views = load_views(store)
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path_factory.mktemp("api")), "TOUCHPOINTS_DEMO": "0"})
    yield store, views, settings
    store.close()


@pytest.fixture(scope="module")
def api(demo):
    store, views, settings = demo
    with TestClient(create_app(store=store, settings=settings, views=views),
                    headers=admin_headers(settings.data)) as client:
        yield client


@pytest.fixture(scope="module")
def linked_identity(demo) -> tuple[str, str]:
    """An anonymous id linked to a customer in the demo data: (anonymous id, customer id)."""
    store = demo[0]
    for recorded in store.read_all():
        if recorded.type == "identity_linked":
            event = decode_recorded(recorded).event
            return event.anonymous_id, event.customer_id
    raise AssertionError("the demo data has no identity link")


# --- documents ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_attribution__each_model_answers_the_documented_body_with_rows_by_conversions(api, model):
    response = api.get("/v1/attribution", params={"model": model})

    body = response.json()
    assert response.status_code == 200
    assert {"model", "lookback_days", "conversions", "value", "unattributed_conversions", "rows"} <= set(body)
    assert body["model"] == model
    credits = [row["conversions"] for row in body["rows"]]
    assert credits == sorted(credits, reverse=True)
    assert all(set(row) == {"channel", "conversions", "value"} for row in body["rows"])
    assert math.isclose(sum(credits), body["conversions"], abs_tol=0.01 * len(credits))


def test_attribution__is_the_projections_document_for_the_same_population(api, demo):
    views = demo[1]

    body = api.get("/v1/attribution", params={"model": "markov", "lookback_days": 30}).json()

    with views.locked():
        expected = projection_views.attribution_view(views.population, model="markov", lookback_days=30.0)
    assert body == expected


def test_attribution__group_by_campaign_names_campaigns(api):
    rows = api.get("/v1/attribution", params={"model": "linear", "group_by": "campaign"}).json()["rows"]

    assert rows and all("campaign" in row and "channel" not in row for row in rows)


@pytest.mark.parametrize(("route", "params", "key"), [
    ("/v1/attribution", {"model": "linear", "group_by": "source"}, "source"),
    ("/v1/first-contact", {"group_by": "source"}, "source"),
    ("/v1/conversion-time", {"group_by": "first_source"}, "first_source"),
])
def test_group_by_source_answers_the_projections_document_by_source(api, demo, route, params, key):
    views = demo[1]

    body = api.get(route, params=params).json()

    with views.locked():
        population = views.population
        expected = {
            "/v1/attribution": lambda: projection_views.attribution_view(population, model="linear", group_by="source"),
            "/v1/first-contact": lambda: projection_views.first_contact_view(population, group_by="source"),
            "/v1/conversion-time": lambda: projection_views.conversion_time_view(
                population, now=views.now(), group_by="first_source"),
        }[route]()
    assert body == expected
    assert body["rows"] and all(key in row and "channel" not in row for row in body["rows"])


def test_attribution__from_and_to_keep_only_conversions_in_the_window(api):
    everything = api.get("/v1/attribution", params={"model": "first_touch"}).json()
    year = api.get("/v1/attribution", params={"model": "first_touch", "from": "2023-01-01", "to": "2024-01-01"}).json()

    assert 0 < year["conversions"] < everything["conversions"]
    assert year["from"].startswith("2023-01-01") and year["to"].startswith("2024-01-01")


def test_first_contact__rows_name_channel_reached_converted_rate_revenue(api):
    rows = api.get("/v1/first-contact").json()["rows"]

    assert rows and all(set(row) == {"channel", "reached", "converted", "conversion_rate", "revenue"} for row in rows)


def test_conversion_time__rows_carry_days_and_the_fixed_histogram(api):
    body = api.get("/v1/conversion-time", params={"group_by": "first_channel"}).json()

    row = body["rows"][0]
    assert {"first_channel", "conversions", "mean_days", "median_days", "p90_days", "histogram"} <= set(row)
    assert list(row["histogram"]) == ["same_day", "1-7d", "8-30d", "31-90d", "91-365d", ">1y"]


def test_views_needing_now_use_the_newest_event_time_unless_given(api, demo):
    views = demo[1]

    default = api.get("/v1/prospects", params={"limit": 1}).json()
    later = api.get("/v1/prospects", params={"limit": 1, "now": "2030-01-01"}).json()

    assert default["now"].startswith(views.now().strftime("%Y-%m-%dT%H:%M:%S"))
    assert later["now"].startswith("2030-01-01")
    assert later["rows"][0]["age_days"] > default["rows"][0]["age_days"]


def test_paths_top_customers_prospects_and_funnel_answer_their_documents(api):
    assert len(api.get("/v1/paths", params={"top": 3}).json()["rows"]) == 3
    assert len(api.get("/v1/customers/top", params={"by": "orders", "limit": 5}).json()["rows"]) == 5
    assert len(api.get("/v1/prospects", params={"limit": 4}).json()["rows"]) == 4
    funnel = api.get("/v1/funnel").json()
    assert [stage["stage"] for stage in funnel["stages"]] == ["reached", "converted", "repeat_buyers"]
    assert "identity_conflicts" in api.get("/v1/data-quality").json()


# --- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/v1/attribution?model=bogus", "model"),
        ("/v1/attribution?lookback_days=0", "lookback_days"),
        ("/v1/attribution?lookback_days=abc", "lookback_days"),
        ("/v1/attribution?from=yesterday", "from"),
        ("/v1/attribution?from=2024-02-01&to=2024-01-01", "to"),
        ("/v1/attribution?group_by=region", "group_by"),
        ("/v1/attribution?half_life_days=-1", "half_life_days"),
        ("/v1/attribution?format=xml", "format"),
        ("/v1/first-contact?group_by=weekday", "group_by"),
        ("/v1/first-contact?to=31.12.2024", "to"),
        ("/v1/conversion-time?group_by=channel", "group_by"),
        ("/v1/conversion-time?now=soon", "now"),
        ("/v1/paths?top=0", "top"),
        ("/v1/paths?collapse_repeats=maybe", "collapse_repeats"),
        ("/v1/customers/top?by=age", "by"),
        ("/v1/customers/top?limit=0", "limit"),
        ("/v1/prospects?limit=-5", "limit"),
        ("/v1/prospects?channel=", "channel"),
        ("/v1/data-quality?limit=0", "limit"),
        ("/v1/funnel?as_of=garbage", "as_of"),
        ("/v1/customers/cust-0000001/timeline?known_at=nope", "known_at"),
    ],
)
def test_a_bad_parameter_gets_422_naming_it(api, url, parameter):
    response = api.get(url)

    assert response.status_code == 422
    assert [item["parameter"] for item in response.json()["invalid"]] == [parameter]


# --- CSV ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", sorted(LIST_ROUTES))
def test_every_list_view_answers_csv_by_format_parameter(api, route):
    document = api.get(route).json()

    response = api.get(route, params={"format": "csv"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(document[LIST_ROUTES[route]])


def test_csv_by_accept_header_flattens_nested_fields(api):
    response = api.get("/v1/conversion-time", headers={"Accept": "text/csv"})

    header = next(csv.reader(io.StringIO(response.text)))
    assert response.headers["content-type"].startswith("text/csv")
    assert header[:2] == ["first_channel", "conversions"]
    assert "histogram.same_day" in header


def test_json_wins_when_the_client_prefers_it(api):
    response = api.get("/v1/funnel", headers={"Accept": "application/json, text/csv;q=0.5"})

    assert response.headers["content-type"] == "application/json"


def test_timeline_answers_csv_with_one_line_per_event(api, linked_identity):
    customer = linked_identity[1]
    events = api.get(f"/v1/customers/{customer}/timeline").json()["events"]

    response = api.get(f"/v1/customers/{customer}/timeline", params={"format": "csv"})

    assert len(list(csv.DictReader(io.StringIO(response.text)))) == len(events)


def test_a_view_without_rows_refuses_csv_naming_the_format(api):
    response = api.get("/v1/data-quality", headers={"Accept": "text/csv"})

    assert response.status_code == 406
    assert response.json()["invalid"][0]["parameter"] == "format"


# --- timeline -------------------------------------------------------------------------------------


def test_timeline__an_unknown_customer_is_404_naming_the_id(api):
    response = api.get("/v1/customers/nobody-at-all/timeline")

    assert response.status_code == 404
    assert response.json()["invalid"][0]["parameter"] == "id"


def test_timeline__a_linked_identity_resolves_to_the_customer(api, linked_identity):
    anonymous, customer = linked_identity

    by_link = api.get(f"/v1/customers/{anonymous}/timeline").json()
    by_customer = api.get(f"/v1/customers/{customer}/timeline").json()

    assert by_link == by_customer
    assert by_customer["identity"] == f"customer-{customer}"
    assert f"anonymous-{anonymous}" in by_customer["identities"]
    moments = [datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")) for event in by_customer["events"]]
    assert moments == sorted(moments)


def test_timeline__runs_on_the_small_timeline_pool_and_answers_concurrent_requests_alike(demo, linked_identity):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from consumers.api.view_routes import TIMELINE_THREADS

    store, views, settings = demo
    _, customer = linked_identity
    threads_used = set()
    timeline = views.timeline

    def recording_timeline(*args, **kwargs):
        threads_used.add(threading.current_thread().name)
        return timeline(*args, **kwargs)

    views.timeline = recording_timeline
    try:
        with TestClient(create_app(store=store, settings=settings, views=views),
                        headers=admin_headers(settings.data)) as client:
            alone = client.get(f"/v1/customers/{customer}/timeline").json()
            with ThreadPoolExecutor(12) as requests:
                together = list(requests.map(lambda _: client.get(f"/v1/customers/{customer}/timeline"), range(24)))
    finally:
        del views.timeline  # back to the class's method

    assert all(response.status_code == 200 and response.json() == alone for response in together)
    assert threads_used and all(name.startswith("timeline") for name in threads_used)
    assert len(threads_used) <= TIMELINE_THREADS


# --- caching and point in time ------------------------------------------------------------------------


def test_an_unchanged_view_answers_304_to_its_etag(api):
    first = api.get("/v1/first-contact")

    again = api.get("/v1/first-contact", headers={"If-None-Match": first.headers["etag"]})

    assert again.status_code == 304


def test_as_of_with_the_replay_hook_removed_is_501_naming_it(demo):
    store, live, settings = demo
    app = create_app(store=store, settings=settings, views=live)
    app.state.views_at = None  # install_views defaults it to the audit replay
    with TestClient(app, headers=admin_headers(settings.data)) as client:
        response = client.get("/v1/funnel", params={"as_of": "2024-01-01"})

    assert response.status_code == 501
    assert response.json()["invalid"][0]["parameter"] == "as_of"


def test_as_of_selects_the_views_the_hook_rebuilds(demo):
    store, live, settings = demo
    asked = []

    def views_at(as_of, known_at):
        asked.append((as_of, known_at))
        views = LiveViews(background=False)
        views.apply_events([e for e in map(decode_recorded, store.read_all()) if e.event.occurred_at <= as_of])
        return views

    app = create_app(store=store, settings=settings, views=live)
    app.state.views_at = views_at
    with TestClient(app, headers=admin_headers(settings.data)) as client:
        then = client.get("/v1/funnel", params={"as_of": "2023-01-01"}).json()
        now = client.get("/v1/funnel").json()

    assert asked and asked[0][0].year == 2023 and asked[0][1] is None
    assert then["reached"] < now["reached"]


# --- discovery ------------------------------------------------------------------------------------


def test_openapi_documents_every_view_parameter(api):
    paths = api.get("/openapi.json").json()["paths"]

    for route in [*LIST_ROUTES, "/v1/data-quality", "/v1/customers/{id}/timeline"]:
        parameters = paths[route]["get"]["parameters"]
        assert parameters, route
        assert all(parameter.get("description") for parameter in parameters), route


def test_openapi_lists_the_group_by_values_of_each_view(api):
    paths = api.get("/openapi.json").json()["paths"]

    def values(route: str) -> list[str]:
        [parameter] = [p for p in paths[route]["get"]["parameters"] if p["name"] == "group_by"]
        return parameter["schema"]["enum"]

    for route in ("/v1/attribution", "/v1/first-contact", "/v1/paths"):
        assert values(route) == ["channel", "campaign", "source"], route
    assert values("/v1/conversion-time") == ["first_channel", "first_campaign", "first_source"]


def test_views_status_reports_position_and_version(api, demo):
    store, views, _ = demo

    status = api.get("/v1/views/status").json()

    assert status["position"] == store.head_position()
    assert status["version"] == views.version


# --- the log position every answer reflects ----------------------------------------------------


def view_urls(api, customer_id: str) -> list[str]:
    """Every GET route of the views the OpenAPI document lists, its path parameter filled."""
    paths = api.get("/openapi.json").json()["paths"]
    return [path.replace("{id}", customer_id) for path, operations in paths.items()
            if "views" in operations.get("get", {}).get("tags", ())]


def test_every_view_route_answers_the_log_position_its_document_reflects(api, demo, linked_identity):
    store, _, _ = demo
    urls = view_urls(api, linked_identity[1])

    answers = {url: api.get(url) for url in urls}

    assert len(urls) >= 10
    assert {url: (answer.status_code, answer.headers.get("X-Touchpoints-Position"))
            for url, answer in answers.items()} == {url: (200, str(store.head_position())) for url in urls}


@pytest.mark.parametrize("route", [*sorted(LIST_ROUTES), "/v1/customers/{id}/timeline"])
def test_every_csv_export_answers_the_log_position_too(api, demo, linked_identity, route):
    store, _, _ = demo

    response = api.get(route.replace("{id}", linked_identity[1]), params={"format": "csv"})

    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["X-Touchpoints-Position"] == str(store.head_position())


def test_the_position_of_every_view_route_is_documented_in_openapi(api):
    paths = api.get("/openapi.json").json()["paths"]

    documented = {path: "X-Touchpoints-Position" in operations["get"]["responses"]["200"].get("headers", {})
                  for path, operations in paths.items() if "views" in operations.get("get", {}).get("tags", ())}

    assert documented and all(documented.values()), documented


def test_views_over_an_empty_log_answer_position_minus_one(store, settings):
    with TestClient(create_app(store=store, settings=settings, views=LiveViews(background=False)),
                    headers=admin_headers(settings.data)) as client:
        response = client.get("/v1/funnel")

    assert response.headers["X-Touchpoints-Position"] == "-1"


def test_the_dashboard_page_and_its_vendored_chart_library_are_served(api):
    page = api.get("/")
    library = api.get("/dashboard/static/chart.umd.min.js")

    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/dashboard/static/chart.umd.min.js" in page.text
    assert library.status_code == 200 and b"Chart.js v4" in library.content[:200]
