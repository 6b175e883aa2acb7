"""Times and numbers at the calendar's edges on every view route: a 422 naming the
parameter, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from application.settings import Settings
from application.store_feed import load_views
from consumers.api.app import create_app
from events.sqlite.store import SQLiteEventStore
from tests.conftest import admin_headers

OVERFLOWING_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
ROUTE_TIMES = {
    "/v1/attribution": ("as_of", "known_at", "from", "to"),
    "/v1/first-contact": ("as_of", "known_at", "from", "to"),
    "/v1/conversion-time": ("as_of", "known_at", "now"),
    "/v1/paths": ("as_of", "known_at", "from", "to"),
    "/v1/customers/top": ("as_of", "known_at", "now"),
    "/v1/prospects": ("as_of", "known_at", "now"),
    "/v1/funnel": ("as_of", "known_at"),
    "/v1/data-quality": ("as_of", "known_at"),
    "/v1/customers/c-1/timeline": ("as_of", "known_at"),
}


@pytest.fixture(scope="module")
def api(demo_store_path: Path, tmp_path_factory: pytest.TempPathFactory):
    store = SQLiteEventStore(demo_store_path)
    data = tmp_path_factory.mktemp("api")
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(data), "TOUCHPOINTS_DEMO": "0"})
    app = create_app(store=store, settings=settings, views=load_views(store))
    with TestClient(app, headers=admin_headers(data), raise_server_exceptions=False) as client:
        yield client
    store.close()


@pytest.mark.parametrize("moment", OVERFLOWING_TIMES)
@pytest.mark.parametrize(("route", "parameter"), [(r, p) for r, ps in ROUTE_TIMES.items() for p in ps])
def test_time_leaving_the_calendar_in_utc__is_a_422_naming_the_parameter(api, route, parameter, moment):
    response = api.get(route, params={parameter: moment})

    assert response.status_code == 422
    body = response.json()
    assert body["invalid"][0]["parameter"] == parameter
    assert "years 1-9999" in body["detail"]


@pytest.mark.parametrize("route", ["/v1/paths", "/v1/attribution"])
@pytest.mark.parametrize("days", ["1000000", "1e300"])
def test_lookback_beyond_100_years__is_a_422_stating_the_maximum(api, route, days):
    response = api.get(route, params={"lookback_days": days})

    assert response.status_code == 422
    assert response.json()["invalid"][0]["parameter"] == "lookback_days"
    assert "36525" in response.json()["invalid"][0]["reason"]


@pytest.mark.parametrize("route", ["/v1/paths", "/v1/attribution"])
def test_lookback_of_100_years__is_answered(api, route):
    assert api.get(route, params={"lookback_days": "36525"}).status_code == 200
