"""The ``Host`` allow-list: the API answers only the names it is meant to be reached by.

DNS rebinding: a web page at ``evil.example`` re-points its own name to 127.0.0.1, and the
browser then lets the page's scripts read what a server on this machine answers, with the
page's origin, so the same-origin policy no longer stands between them. The browser
still sends ``Host: evil.example``; answering only known names closes that door.

Allowed: loopback names (``localhost``, ``*.localhost``), the host the API listens on
(``TOUCHPOINTS_HOST`` unless it is a wildcard address), ``TOUCHPOINTS_ALLOWED_HOSTS``
(``name`` matches any port, ``name:port`` only that port, ``*`` anything), any IP
address, and any name without a dot. A page whose origin is an IP address reached it
without DNS, so no name was rebound (and probes address a container by its IP); a name
without a dot (``api`` in a compose network, ``testserver``) resolves through the local
hosts file or search domain, which an outside attacker does not control. A request
without ``Host`` (HTTP/1.0 tools) passes: browsers always send one. Everything else, a
public name such as ``evil.example`` first of all, gets 421 Misdirected Request in the
app's error shape, before any route, key check or body read.

CORS, decided per route: ``/v1/events`` and every read route send no
``Access-Control-Allow-*`` header, so browsers keep other origins' scripts from reading any
answer, and ``POST /v1/events`` takes only JSON or NDJSON content types
(``consumers.api.body``), which a cross-origin page cannot send without a preflight that is
then refused. The tracking endpoints, which browsers call from customers' sites, allow any
origin on their own answers only (``consumers.api.tracking_routes``): their write key
travels in the body, no cookie is read, and the answer carries nothing to read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[None]]], Awaitable[None]]

LOOPBACK_NAMES = ("localhost",)
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::", "[::]")


def allowed_hosts(listen_host: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The allow-list of a server listening on ``listen_host`` plus ``extra`` entries."""
    names = list(LOOPBACK_NAMES)
    if listen_host.strip().lower() not in WILDCARD_ADDRESSES:
        names.append(listen_host.strip().lower())
    names.extend(entry.strip().lower() for entry in extra if entry.strip())
    return tuple(dict.fromkeys(names))


class HostAllowList:
    """Whether a ``Host`` header value names this server (see the module docstring)."""

    def __init__(self, entries: Iterable[str]):
        self.any = False
        self.names: set[str] = set()
        self.names_with_port: set[tuple[str, str]] = set()
        for entry in entries:
            if entry == "*":
                self.any = True
                continue
            name, port = split_host(entry)
            if port:
                self.names_with_port.add((name, port))
            else:
                self.names.add(name)

    def allows(self, host: str | None) -> bool:
        if self.any or host is None:
            return True
        name, port = split_host(host)
        if not name:
            return False
        if name in self.names or name.endswith(".localhost") or (name, port) in self.names_with_port:
            return True
        return "." not in name or _is_ip_address(name)


def split_host(value: str) -> tuple[str, str]:
    """``(name, port)`` of ``name``, ``name:port``, ``[v6]`` or ``[v6]:port``, lower-cased,
    without a trailing dot (``localhost.`` is ``localhost``)."""
    value = value.strip().lower()
    if value.startswith("["):
        address, _, rest = value[1:].partition("]")
        return address, rest[1:] if rest.startswith(":") else ""
    if value.count(":") > 1:  # a bare IPv6 address
        return value, ""
    name, _, port = value.partition(":")
    return name.rstrip("."), port


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostGuard:
    """ASGI middleware answering 421 to requests for a ``Host`` not on the list."""

    def __init__(self, app: ASGIApp, *, allowed: Iterable[str]):
        self.app = app
        self.allowed = HostAllowList(allowed)

    async def __call__(
        self, scope: Scope, receive: Callable[..., Awaitable[Any]], send: Callable[..., Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if self.allowed.allows(host):
            await self.app(scope, receive, send)
            return
        document = {
            "error": "misdirected_request",
            "detail": f"this server does not answer for Host {host!r}; add it to TOUCHPOINTS_ALLOWED_HOSTS "
            "if it is one of its names",
        }
        body = orjson.dumps(document)
        await send({"type": "http.response.start", "status": 421, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
