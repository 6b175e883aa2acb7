"""Access control on every route of the real app (live views included): no key 401, a key
without the scope 403, a revoked key 401, the right key through; Bearer and Basic; emit keys
narrowed to a source and types; /healthz public and detailed; /v1/keys."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from application.access import Scope, open_access
from application.live_views import LiveViews
from consumers.api.app import create_app
from consumers.api.auth import OPTIONAL, POLICY, PUBLIC, ROUTE_SCOPES, SELF
from tests.conftest import bearer, make_key

EXTRA_ROUTES = [("GET", "/"), ("GET", "/metrics"), ("GET", "/login"), ("GET", "/docs"), ("GET", "/openapi.json"),
                ("GET", "/redoc"), ("GET", "/dashboard/static/dashboard.js")]
PATH_VALUES = {"type_name": "ad_clicked", "id": "c-1", "prefix": "tp_00000000"}
# a scope that does not imply the one needed: what a wrong-scope key holds
WRONG_SCOPE = {Scope.EMIT: "read", Scope.READ: "emit", Scope.AUDIT: "read", Scope.ADMIN: "audit", SELF: "read"}
RIGHT_SCOPE = {Scope.EMIT: "emit", Scope.READ: "read", Scope.AUDIT: "audit", Scope.ADMIN: "admin", SELF: "emit"}


@pytest.fixture
def app(store, settings):
    with LiveViews(background=False) as views:
        yield create_app(store=store, settings=settings, views=views)


@pytest.fixture
def client(app):
    with TestClient(app) as opened:
        yield opened


def every_route(app) -> list[tuple[str, str]]:
    schema = app.openapi()
    routes = [(method.upper(), path) for path, operations in schema["paths"].items() for method in operations]
    return routes + EXTRA_ROUTES


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def call(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    content = b"{}" if needed(method, path) is SELF else b"[]"  # the tracking API reads a message object
    body = {"content": content, "headers": {"content-type": "application/json", **(headers or {})}}
    if method == "GET":
        return client.get(concrete(path), headers=headers or {})
    return client.request(method, concrete(path), **body)


def needed(method: str, path: str) -> Any:
    return POLICY.required(method, concrete(path), b"")[0]


def test_every_route__has_a_scope_chosen_for_it_not_the_default(app):
    unlisted = [(m, p) for m, p in every_route(app)
                if (m, p) not in ROUTE_SCOPES and not p.startswith("/dashboard/static/")]

    assert unlisted == []


def test_every_route__answers_401_without_a_key_but_healthz_and_login(app, client):
    answers = {(m, p): call(client, m, p) for m, p in every_route(app)}

    open_routes = {(m, p): r.status_code for (m, p), r in answers.items() if r.status_code != 401}
    assert open_routes == {("GET", "/healthz"): 200, ("GET", "/login"): 200}
    refused = [response for response in answers.values() if response.status_code == 401]
    assert all(response.headers["www-authenticate"].startswith("Bearer") for response in refused)
    assert all(set(response.json()) >= {"error", "detail"} for response in refused)


def test_every_route__answers_403_to_a_key_without_the_scope(app, client, settings):
    for method, path in every_route(app):
        scope = needed(method, path)
        if scope in (PUBLIC, OPTIONAL):
            continue
        key = make_key(settings.data, WRONG_SCOPE[scope])

        response = call(client, method, path, bearer(key))

        assert response.status_code == 403, (method, path, response.text)
        assert set(response.json()) >= {"error", "detail"}


def test_every_route__answers_401_to_a_revoked_key(app, client, settings):
    for method, path in every_route(app):
        scope = needed(method, path)
        if scope in (PUBLIC, OPTIONAL):
            continue
        key = make_key(settings.data, RIGHT_SCOPE[scope])
        access = open_access(settings.data)
        access.revoke(key.split("_")[1])
        access.close()

        response = call(client, method, path, bearer(key))

        assert response.status_code == 401, (method, path)
        assert "revoked" in response.json()["detail"]


def test_every_route__lets_the_right_key_through(app, client, settings):
    for method, path in every_route(app):
        scope = needed(method, path)
        key = make_key(settings.data, RIGHT_SCOPE.get(scope, "read"))

        response = call(client, method, path, bearer(key))

        assert response.status_code not in (401, 403), (method, path, response.text)


@pytest.mark.parametrize("parameter", ["as_of", "known_at"])
def test_point_in_time_views__need_audit(client, settings, parameter):
    reader, auditor = bearer(make_key(settings.data, "read")), bearer(make_key(settings.data, "audit"))

    refused = client.get("/v1/funnel", params={parameter: "2024-01-01"}, headers=reader)
    allowed = client.get("/v1/funnel", params={parameter: "2024-01-01"}, headers=auditor)

    assert refused.status_code == 403 and "'audit'" in refused.json()["detail"]
    assert allowed.status_code == 200


def basic(user: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic__the_key_as_user_name_with_an_empty_password_is_accepted(client, settings):
    key = make_key(settings.data, "read")

    assert client.get("/v1/funnel", headers=basic(key)).status_code == 200
    assert client.get("/v1/funnel", headers=basic(key, "secret")).status_code == 401
    assert client.get("/v1/funnel", headers={"Authorization": "Basic !!"}).status_code == 401


@pytest.mark.parametrize("header", ["Bearer tp_00000000_" + "a" * 43, "Bearer nonsense", "Token abc", "Bearer "])
def test_unknown_or_malformed_credentials__are_401(client, header):
    response = client.get("/v1/funnel", headers={"Authorization": header})

    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_a_browser_without_a_session__gets_a_page_pointing_at_the_login_link(client):
    response = client.get("/", headers={"Accept": "text/html"})

    assert response.status_code == 401
    assert "touchpoints login-link" in response.text


def test_healthz__without_a_key_says_only_the_status_of_each_component(client, settings):
    public = client.get("/healthz").json()
    detailed = client.get("/healthz", headers=bearer(make_key(settings.data, "read"))).json()

    assert public["components"] == {name: {"status": report["status"]} for name, report in
                                     detailed["components"].items()}
    assert "url" in detailed["components"]["store"] and str(settings.data) not in str(public)


def test_healthz__an_emit_key_sees_only_the_public_answer(client, settings):
    body = client.get("/healthz", headers=bearer(make_key(settings.data, "emit"))).json()

    assert body["components"]["store"] == {"status": "ok"}


def test_narrowed_emit_key__a_request_with_another_type_or_source_stores_nothing(client, settings, store,
                                                                                   make_event):
    key = make_key(settings.data, "emit", name="web page", source="web",
                   types=frozenset({"page_viewed", "ad_clicked"}))
    events = [make_event(source="web"), make_event("order_placed", source="web"), make_event(source="shop")]

    response = client.post("/v1/events", json=events, headers=bearer(key))

    assert response.status_code == 403
    document = response.json()
    assert [item["index"] for item in document["refused"]] == [1, 2]
    assert "order_placed" in document["refused"][0]["reason"] and "'shop'" in document["refused"][1]["reason"]
    assert store.head_position() is None


def test_narrowed_emit_key__stores_what_it_may_write(client, settings, store, make_event):
    key = make_key(settings.data, "emit", source="web", types=frozenset({"page_viewed"}))

    response = client.post("/v1/events", json=[make_event(source="web")], headers=bearer(key))

    assert response.status_code == 200 and store.count() == 1


def test_keys_api__an_admin_creates_a_key_that_works_then_revokes_it(client, auth_headers):
    created = client.post("/v1/keys", json={"name": "bi", "scopes": ["audit"]}, headers=auth_headers)
    key = created.json()["key"]
    before = client.get("/v1/events", headers=bearer(key)).status_code
    listed = client.get("/v1/keys", headers=auth_headers).json()["keys"]

    revoked = client.delete(f"/v1/keys/{created.json()['prefix']}", headers=auth_headers)

    assert created.status_code == 201 and before == 200
    assert key not in str(listed) and created.json()["prefix"] in str(listed)
    assert revoked.json()["revoked_at"] is not None
    assert client.get("/v1/events", headers=bearer(key)).status_code == 401


def test_keys_api__narrowing_a_key_that_is_not_emit_only_is_422(client, auth_headers):
    response = client.post("/v1/keys", json={"name": "x", "scopes": ["read"], "source": "web"}, headers=auth_headers)

    assert response.status_code == 422 and "emit keys only" in response.json()["detail"]


def test_openapi__documents_bearer_and_basic_and_the_401_403_answers(client, auth_headers):
    schema = client.get("/openapi.json", headers=auth_headers).json()

    assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "HTTPBasic"}
    assert {"401", "403"} <= set(schema["paths"]["/v1/funnel"]["get"]["responses"])
