"""Who may call what: every request passes ``AccessGate`` before any route runs.

Credentials, in this order: ``Authorization: Bearer KEY``; ``Authorization: Basic`` with
the key as user name and an empty password (what tracking SDKs send); the dashboard's
session cookie (``SESSION_COOKIE``, from ``/login``, scope ``read`` only). Without a valid
one the answer is 401 with ``WWW-Authenticate`` (a revoked key too: it is looked up on every
request); with one that lacks the route's scope, 403. Both in the app's error shape
``{"error", "detail"}``.

``ROUTE_SCOPES`` names the scope of every route by method and path template (``MOUNTS``
of every mounted folder); what is not listed needs ``admin``: a new route is closed until
someone decides, and a path no route has is 401 to strangers and 403 below ``admin``.
``as_of`` and ``known_at`` on a read route make it an audit request. ``PUBLIC`` routes (the
login page) need nothing; ``OPTIONAL`` ones (``/healthz``) answer more to a caller with a
key (``principal_of``). ``/docs`` and ``/openapi.json`` need ``read``: the dashboard reads the
schema with its cookie, and nothing but ``/healthz`` and the login page answers strangers.

The seam for routes that take a key elsewhere (the tracking API's ``writeKey`` in a body):
list them as ``SELF`` and call ``authenticate(request, key=...)`` then ``require(...)``.
"""

from __future__ import annotations

import base64
import binascii
from html import escape
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Security
from fastapi.security import HTTPBasic, HTTPBearer
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import compile_path

from application.access import Access, Principal, Scope, Unauthorized
from application.access.narrowing import refusal_document, refusals
from application.decode import DecodedBody
from consumers.api.docs import ErrorDocument
from consumers.api.tracking_paths import TRACKING_PATHS

ASGIScope = MutableMapping[str, Any]
ASGIApp = Callable[[ASGIScope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[None]]], Awaitable[None]]

SESSION_COOKIE = "touchpoints_session"
REALM = 'Bearer realm="touchpoints"'
PUBLIC = "public"
OPTIONAL = "optional"
SELF = "self"  # the route authenticates the request itself
AUDIT_PARAMETERS = frozenset({"as_of", "known_at"})

VIEW_ROUTES = (
    "/v1/attribution", "/v1/first-contact", "/v1/conversion-time", "/v1/paths", "/v1/customers/top",
    "/v1/prospects", "/v1/funnel", "/v1/data-quality", "/v1/customers/{id}/timeline", "/v1/views/status",
)
ROUTE_SCOPES: dict[tuple[str, str], Scope | str] = {
    ("GET", "/healthz"): OPTIONAL,
    ("GET", "/login"): PUBLIC,
    ("POST", "/v1/events"): Scope.EMIT,
    ("GET", "/v1/events"): Scope.AUDIT,
    ("GET", "/v1/schemas"): Scope.READ,
    ("GET", "/v1/schemas/{type_name}"): Scope.READ,
    ("GET", "/metrics"): Scope.READ,
    ("GET", "/"): Scope.READ,
    ("GET", "/openapi.json"): Scope.READ,
    ("GET", "/docs"): Scope.READ,
    ("GET", "/docs/oauth2-redirect"): Scope.READ,
    ("GET", "/redoc"): Scope.READ,
    ("GET", "/v1/keys"): Scope.ADMIN,
    ("POST", "/v1/keys"): Scope.ADMIN,
    ("DELETE", "/v1/keys/{prefix}"): Scope.ADMIN,
    ("POST", "/v1/erasures"): Scope.ADMIN,
    **{("GET", path): Scope.READ for path in VIEW_ROUTES},
    **{("POST", path): SELF for path in TRACKING_PATHS},  # writeKey in the body: tracking_routes.authorize
}
MOUNTS: dict[str, Scope] = {"/dashboard/static": Scope.READ}


# Every route's OpenAPI operation names the two ways to send a key (the gate enforces them;
# these dependencies only document them and never refuse) and the 401 and 403 answers.
CREDENTIALS_IN_SCHEMA = [
    Security(HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer tp_..._...`")),
    Security(HTTPBasic(auto_error=False, description="the API key as user name, an empty password")),
]
ACCESS_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDocument, "description": "No API key, or one that is unknown or revoked"},
    403: {"model": ErrorDocument, "description": "The key lacks the scope this request needs (or, emitting, "
                                                 "an item is outside the source and types it is narrowed to)"},
}


class Forbidden(Exception):
    """Valid credentials without the scope a request needs (HTTP 403)."""


def principal_of(request: Request) -> Principal | None:
    """Who the gate let in (None on a public or optional route called without credentials)."""
    return request.scope.get("state", {}).get("principal")


def authenticate(request: Request, *, key: str | None = None) -> Principal:
    """The principal of ``key`` (e.g. a ``writeKey`` from a body) or, without one, of the
    request's credentials; ``Unauthorized`` when there are none or they are not valid."""
    access: Access = request.app.state.access
    if key is not None:
        return access.authenticate_key(key)
    principal = _principal(access, request.scope)
    if principal is None:
        raise Unauthorized("this request needs an API key: send Authorization: Bearer KEY")
    return principal


def require(principal: Principal, scope: Scope, what: str) -> None:
    if not principal.allows(scope):
        raise Forbidden(f"{principal.label} lacks the {scope.value!r} scope that {what} needs")


class RoutePolicy:
    """``ROUTE_SCOPES`` and ``MOUNTS`` compiled for a lookup per request: a dict for fixed
    paths, the path templates' patterns (Starlette's own) for the others."""

    def __init__(self, scopes: dict[tuple[str, str], Scope | str], mounts: dict[str, Scope]):
        self.fixed = {key: needed for key, needed in scopes.items() if "{" not in key[1]}
        self.templated = [(method, compile_path(template)[0], template, needed)
                          for (method, template), needed in scopes.items() if "{" in template]
        self.mounts = [(prefix.rstrip("/") + "/", prefix, needed) for prefix, needed in mounts.items()]

    def required(self, method: str, path: str, query: bytes) -> tuple[Scope | str, str]:
        """What a request needs and the route it is for. Anything not listed (another
        method, a path no route has) needs ``admin``: closed until someone decides."""
        method = "GET" if method == "HEAD" else method
        needed, template = self.fixed.get((method, path)), path
        if needed is None:
            needed, template = self._matched(method, path)
        if needed is Scope.READ and query and _has_audit_parameter(query):
            needed = Scope.AUDIT
        return needed, template

    def _matched(self, method: str, path: str) -> tuple[Scope | str, str]:
        for route_method, pattern, template, needed in self.templated:
            if route_method == method and pattern.match(path):
                return needed, template
        if method == "GET":
            for start, prefix, needed in self.mounts:
                if path.startswith(start):
                    return needed, prefix
        return Scope.ADMIN, path


POLICY = RoutePolicy(ROUTE_SCOPES, MOUNTS)


def _has_audit_parameter(query: bytes) -> bool:
    names = (name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    return any(name in AUDIT_PARAMETERS for name in names)


class AccessGate:
    """Pure ASGI middleware: authenticate, authorise, and leave the principal in
    ``scope["state"]["principal"]`` for the route (``principal_of``)."""

    def __init__(self, app: ASGIApp, access: Access, policy: RoutePolicy = POLICY):
        self.app = app
        self.access = access
        self.policy = policy

    async def __call__(self, scope: ASGIScope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed, template = self.policy.required(scope["method"], scope["path"], scope.get("query_string", b""))
        if needed is PUBLIC:
            await self.app(scope, receive, send)
            return
        try:
            principal = _principal(self.access, scope)
            if principal is None and needed not in (OPTIONAL, SELF):
                raise Unauthorized("this request needs an API key: send Authorization: Bearer KEY "
                                   "(the dashboard: open the login link `touchpoints up` printed)")
            if principal is not None and isinstance(needed, Scope):
                require(principal, needed, f"{scope['method']} {template}")
        except Unauthorized as error:
            await unauthorized(scope, str(error))(scope, receive, send)
            return
        except Forbidden as error:
            await forbidden(str(error))(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _principal(access: Access, scope: ASGIScope) -> Principal | None:
    """The request's principal, None without credentials; Unauthorized for bad ones."""
    authorization = _header(scope, b"authorization")
    if authorization is not None:
        kind, _, value = authorization.strip().partition(" ")
        if kind.lower() == "bearer":
            return access.authenticate_key(value.strip())
        if kind.lower() == "basic":
            return access.authenticate_key(_basic_user(value.strip()))
        raise Unauthorized(f"unsupported Authorization scheme {kind[:20]!r}: "
                           "use Bearer (or Basic with the key as user name)")
    session = _cookie(scope, SESSION_COOKIE)
    if session is not None and scope["method"] in ("GET", "HEAD"):
        return access.authenticate_session(session)
    return None


def _basic_user(value: str) -> str:
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed Basic credentials") from None
    if password:
        raise Unauthorized("Basic credentials: put the key in the user name and leave the password empty")
    return user


def _header(scope: ASGIScope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _cookie(scope: ASGIScope, name: str) -> str | None:
    for key, value in scope["headers"]:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                cookie_name, _, cookie_value = part.strip().partition("=")
                if cookie_name == name and cookie_value:
                    return cookie_value
    return None


# --- answers -----------------------------------------------------------------------------

LOGIN_HINT_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>touchpoints: log in</title>
</head><body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 3em auto">
<h1>Log in to the touchpoints dashboard</h1><p>{reason}</p>
<p>Open the login link <code>touchpoints up</code> printed when it started, or make a new one on the machine
that holds the data folder: <code>touchpoints login-link</code>. A link works once; it leaves a session
cookie in this browser that lets it read the dashboard.</p></body></html>"""


def login_hint_page(reason: str, status: int) -> HTMLResponse:
    return HTMLResponse(LOGIN_HINT_HTML.format(reason=escape(reason)), status_code=status,
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def unauthorized(scope: ASGIScope, detail: str) -> Response:
    """401: an HTML page pointing at /login for a browser, the error document otherwise."""
    if "text/html" in (_header(scope, b"accept") or "") and scope["method"] in ("GET", "HEAD"):
        response: Response = login_hint_page(detail, 401)
        response.headers["WWW-Authenticate"] = REALM
        return response
    return Response(orjson.dumps({"error": "unauthorized", "detail": detail}), status_code=401,
                    media_type="application/json", headers={"WWW-Authenticate": REALM})


def forbidden(detail: str) -> Response:
    return Response(orjson.dumps({"error": "forbidden", "detail": detail}), status_code=403,
                    media_type="application/json")


async def unauthorized_handler(request: Request, error: Exception) -> Response:
    return unauthorized(request.scope, str(error))


async def forbidden_handler(request: Request, error: Exception) -> Response:
    return forbidden(str(error))


def emit_refusal(request: Request, decoded: DecodedBody) -> Response | None:
    """403 when the request's emit key is narrowed and some item is outside it (nothing of
    the request may then be stored); None when every item is allowed."""
    principal = principal_of(request)
    if principal is None or (principal.source is None and principal.types is None) or not decoded.batch.ids:
        return None
    batch = decoded.batch
    found = refusals(principal, batch.types, batch.data)
    if not found:
        return None
    return Response(orjson.dumps(refusal_document(principal, found, len(batch))), status_code=403,
                    media_type="application/json")
