"""The dashboard in a real headless Chromium (Debian's) against a real uvicorn server
with the demo data set, fed live from the store. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumers.api.app import create_app
from consumers.api.server import base_url, bind_socket, make_server
from consumers.cli.keys import login_url
from application.live_views import LiveViews
from application.settings import Settings
from application.store_feed import StoreFeed
from events.registry import decode_recorded
from events.sqlite.store import SQLiteEventStore
from tests.conftest import bearer, make_key
from tests.consumers.helpers import headless_chromium

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parents[3] / "artifacts" / "screenshots"
CANVASES = ("attribution-chart", "funnel-chart", "conversion-time-chart")


@pytest.fixture(scope="module")
def server(demo_store_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("dashboard")
    shutil.copy(demo_store_path, folder / "events.db")
    store = SQLiteEventStore(folder / "events.db")
    views = LiveViews()
    feed = StoreFeed(store, views).start()
    feed.wait_until_caught_up(60)
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(folder), "TOUCHPOINTS_DEMO": "0"})
    app = create_app(store=store, settings=settings, views=views, health_checks={"view_feed": feed.stats})
    sock = bind_socket("127.0.0.1", 0)
    uvicorn_server = make_server(app, log_level="warning")
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not uvicorn_server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield {"url": base_url(sock), "store": store, "access": app.state.access,
           "headers": bearer(make_key(folder, "admin"))}
    uvicorn_server.should_exit = True
    thread.join(10)
    sock.close()
    feed.stop()
    views.close()
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as launched:
        yield launched


@pytest.fixture
def page(browser, server) -> Iterator[Any]:
    """A fresh page on the dashboard, loaded; ``page.problems`` collects console errors."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.goto(login_link(server))  # as the user does with the link `touchpoints up` printed
    opened.wait_for_selector("body[data-loaded=true]", timeout=30_000)
    opened.problems = problems
    yield opened
    context.close()


def login_link(server: dict[str, Any]) -> str:
    return login_url(server["url"], server["access"].login_token())


def screenshot(page: Any, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def chart_values(page: Any, canvas: str, dataset: int = 0) -> list[float]:
    return page.evaluate(f"Chart.getChart('{canvas}').data.datasets[{dataset}].data")


def column_a(page: Any) -> list[str]:
    return page.locator("[data-testid=credit-a]").all_inner_texts()


def test_dashboard__loads_without_console_errors(page):
    page.wait_for_timeout(500)  # let the charts' first animation finish before the picture

    screenshot(page, "dashboard-overview", full_page=True)
    assert page.problems == []
    assert page.title().startswith("Touchpoints")


def test_dashboard__the_login_link_leaves_the_address_bar_for_a_strict_httponly_read_cookie(page, server):
    (cookie,) = page.context.cookies()

    assert page.url == f"{server['url']}/"
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("touchpoints_session", True, "Strict")
    assert page.evaluate("Object.keys(localStorage).length + Object.keys(sessionStorage).length") == 0
    posted = page.request.post(f"{server['url']}/v1/events", data=[], headers={"content-type": "application/json"})
    assert posted.status == 401  # the cookie only reads: a write carrying it alone carries no credentials


def test_dashboard__a_used_login_link_does_not_log_in_another_browser(browser, server):
    link = login_link(server)
    first, second = browser.new_context(), browser.new_context()
    try:
        first.new_page().goto(link)
        again = second.new_page()
        answer = again.goto(link)

        assert answer.status == 401 and "touchpoints login-link" in again.content()
        assert again.goto(server["url"]).status == 401 and second.cookies() == []
    finally:
        first.close()
        second.close()


def test_dashboard__every_chart_renders_with_data(page):
    for canvas in CANVASES:
        assert sum(chart_values(page, canvas)) > 0, canvas
    assert page.locator("#first-contact-table tbody tr").count() > 0
    assert page.locator("#paths-list li").count() > 0


def test_dashboard__attribution_shows_the_api_numbers(page, server):
    api = httpx.get(f"{server['url']}/v1/attribution", params={"model": "first_touch"}, headers=server["headers"]).json()
    labels = page.evaluate("Chart.getChart('attribution-chart').data.labels")

    shown = dict(zip(labels, chart_values(page, "attribution-chart")))

    assert shown == {row["channel"]: row["conversions"] for row in api["rows"]}


def test_dashboard__the_model_switch_changes_the_numbers(page, server):
    before = column_a(page)
    expected = httpx.get(f"{server['url']}/v1/attribution", params={"model": "last_touch"}, headers=server["headers"]).json()

    page.select_option("[data-testid=model-a]", "last_touch")
    page.wait_for_function("document.getElementById('col-a').textContent === 'Last touch'")

    after = column_a(page)
    labels = page.evaluate("Chart.getChart('attribution-chart').data.labels")
    assert after != before
    assert dict(zip(labels, chart_values(page, "attribution-chart"))) == {
        row["channel"]: row["conversions"] for row in expected["rows"]
    }
    screenshot(page, "dashboard-model-switch")
    assert page.problems == []


def test_dashboard__customer_search_opens_the_timeline(page, server):
    anonymous, customer = linked_identity(server["store"])
    expected = httpx.get(f"{server['url']}/v1/customers/{customer}/timeline", headers=server["headers"]).json()

    page.fill("#search-input", anonymous)
    page.click("#search button")
    page.wait_for_selector("[data-testid=timeline]:not(.hidden)")

    assert page.inner_text("#drawer-title") == customer
    assert page.locator("[data-testid=timeline-events] li").count() == len(expected["events"])
    screenshot(page, "dashboard-timeline")
    assert page.problems == []


def test_dashboard__refreshes_live_when_an_event_is_posted(page, server):
    anonymous, customer = linked_identity(server["store"])
    reached = int(page.inner_text("[data-testid=kpi-reached]").replace(",", ""))
    page.fill("#search-input", customer)
    page.click("#search button")
    page.wait_for_selector("[data-testid=timeline]:not(.hidden)")
    event_id = str(uuid.uuid4())
    fresh = {"event_id": event_id, "type": "ad_clicked", "occurred_at": "2024-12-31T23:00:00Z",
             "customer_id": customer, "channel": "tiktok", "campaign": "live-refresh-check"}
    newcomer = {"event_id": str(uuid.uuid4()), "type": "page_viewed", "occurred_at": "2024-12-31T23:00:00Z",
                "anonymous_id": f"cookie:{uuid.uuid4().hex[:16]}", "channel": "direct"}

    posted = httpx.post(f"{server['url']}/v1/events", json=[fresh, newcomer], headers=server["headers"])

    assert posted.status_code in (200, 201)
    arrived = page.wait_for_selector(f"[data-event-id='{event_id}']", timeout=15_000)
    assert "ev-new" in arrived.get_attribute("class")
    arrived.scroll_into_view_if_needed()
    page.wait_for_function(
        f"document.querySelector('[data-testid=kpi-reached]').textContent.replace(/,/g, '') === '{reached + 1}'",
        timeout=15_000,
    )
    screenshot(page, "dashboard-live-refresh")
    assert page.problems == []


def linked_identity(store: SQLiteEventStore) -> tuple[str, str]:
    for recorded in store.read_all():
        if recorded.type == "identity_linked":
            event = decode_recorded(recorded).event
            return event.anonymous_id, event.customer_id
    raise AssertionError("the demo data has no identity link")
