"""GET /login: a one-time token becomes a read-only session cookie, and the token leaves the URL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from application.live_views import LiveViews
from consumers.api.app import create_app
from consumers.api.auth import SESSION_COOKIE


@pytest.fixture
def app(store, settings):
    with LiveViews(background=False) as views:
        yield create_app(store=store, settings=settings, views=views)


@pytest.fixture
def browser(app):
    with TestClient(app, follow_redirects=False) as client:
        yield client


def log_in(browser: TestClient, app) -> None:
    answer = browser.get("/login", params={"token": app.state.access.login_token()})
    assert answer.status_code == 303


def test_login_page__without_a_token_explains_how_to_get_a_link(browser):
    page = browser.get("/login")

    assert page.status_code == 200
    assert "touchpoints login-link" in page.text and "touchpoints up" in page.text


def test_login__trades_the_token_for_an_httponly_strict_cookie_and_redirects_to_the_dashboard(browser, app):
    answer = browser.get("/login", params={"token": app.state.access.login_token()})

    cookie = answer.headers["set-cookie"]
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert {"HttpOnly", "SameSite=strict", "Path=/"} <= {part.strip() for part in cookie.split(";")}
    assert "Secure" not in cookie  # plain http on loopback; see the https test
    assert answer.headers["cache-control"] == "no-store" and answer.headers["referrer-policy"] == "no-referrer"


def test_login__over_https_the_cookie_is_secure(app):
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        answer = client.get("/login", params={"token": app.state.access.login_token()})

    assert "Secure" in answer.headers["set-cookie"]


def test_login__a_token_works_once(browser, app):
    token = app.state.access.login_token()
    browser.get("/login", params={"token": token})
    browser.cookies.clear()

    again = browser.get("/login", params={"token": token})

    assert again.status_code == 401 and "set-cookie" not in again.headers
    assert "used already" in again.text


def test_session__reads_the_dashboard_views_and_schema(browser, app):
    log_in(browser, app)

    assert [browser.get(path).status_code for path in ("/", "/v1/funnel", "/openapi.json", "/metrics")] == [200] * 4


def test_session__grants_read_only(browser, app, make_event):
    log_in(browser, app)

    assert browser.get("/v1/events").status_code == 403
    assert browser.get("/v1/funnel", params={"as_of": "2024-01-01"}).status_code == 403
    assert browser.post("/v1/events", json=[make_event()]).status_code == 401
    assert browser.get("/v1/keys").status_code == 403


def test_session__a_made_up_cookie_is_401(browser):
    browser.cookies.set(SESSION_COOKIE, "made-up")

    assert browser.get("/v1/funnel").status_code == 401
