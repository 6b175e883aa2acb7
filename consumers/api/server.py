"""Running the API under uvicorn on a socket bound up front, so port 0 (a free port) works and
the real address can be printed before serving.

Slow clients: uvicorn closes idle kept-alive connections (``timeout_keep_alive``) and caps
connections plus requests in flight (``limit_concurrency``: 503 beyond), but it waits for a
request's headers and body for ever, so a client sending a byte every few seconds holds a
connection (and, by the hundred, the server) as long as it likes. ``GuardedHttpProtocol``
adds the deadlines: the headers within ``header_timeout`` of connecting (or of a kept-alive
request's first byte), at most ``MAX_HEAD_BYTES`` of them, and the body within
``body_timeout`` + ``BODY_GRACE`` of the headers (``POST /v1/events`` answers 408 itself
at ``body_timeout``, ``consumers.api.body``; the grace lets that answer go out first).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from application.collector import tune_for_a_long_running_process

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; beyond: 431
BODY_GRACE = 5.0  # seconds past body_timeout before the connection of an unread body is closed
_REFUSALS = {  # status: (error code, reason phrase)
    408: (b"request_timeout", b"Request Timeout"),
    431: (b"headers_too_large", b"Request Header Fields Too Large"),
}


@dataclass(frozen=True)
class ConnectionLimits:
    """How long and how many: ``application.settings.Settings`` names each one."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 256

    @classmethod
    def of(cls, settings: Any) -> "ConnectionLimits":
        """The limits of a ``Settings`` (None: the defaults)."""
        if settings is None:
            return cls()
        return cls(settings.header_timeout, settings.body_timeout, settings.keep_alive_timeout,
                   settings.max_connections)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: the OS picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def address_of(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


def base_url(sock: socket.socket) -> str:
    host, port = address_of(sock)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def make_server(
    app: Any, *, log_level: str = "info", access_log: bool = False, limits: ConnectionLimits | None = None
) -> uvicorn.Server:
    """A uvicorn server for ``app``; run it with ``server.run(sockets=[sock])`` and stop it
    by setting ``server.should_exit = True`` (uvicorn also handles SIGINT/SIGTERM).
    ``limits`` default to those of the app's settings (``app.state.settings``, as
    ``consumers.api.app.create_app`` sets them), else ``ConnectionLimits()``."""
    if limits is None:
        limits = ConnectionLimits.of(getattr(getattr(app, "state", None), "settings", None))
    protocol = type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})
    config = uvicorn.Config(
        app, log_level=log_level.lower(), access_log=access_log, lifespan="on", timeout_graceful_shutdown=10,
        http=protocol, timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]  # float is fine
        limit_concurrency=limits.max_connections,
    )
    return uvicorn.Server(config)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines for a request's headers and body (see the
    module docstring). One timer per connection: armed for the headers at connect and at a
    request's first byte, re-armed for the body when the headers are complete, disarmed
    when the request has arrived."""

    limits: ConnectionLimits = ConnectionLimits()

    _deadline: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _in_head = False
    _begun = False  # a byte of the awaited request has come

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)  # a chunk may hold the headers' end and a body's start
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse(431, f"request line and headers over {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a kept-alive connection's next request: its headers are due now
            self._start_head()
        self._begun = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.limits.body_timeout + BODY_GRACE, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _start_head(self) -> None:
        self._in_head = True
        self._begun = False
        self._head_bytes = 0
        self._arm(self.limits.header_timeout, "headers")

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, what, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, what: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if what == "headers" and not self._begun:  # an idle connection: nothing to answer
            self.transport.close()
            return
        if cycle is not None and cycle.response_started and what == "body":
            self.transport.close()
            return
        self._refuse(408, f"the request's {what} did not arrive within {seconds:g} s")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` in the app's error shape and close the connection."""
        self._disarm()
        self._in_head = False
        error, phrase = _REFUSALS[status]
        body = b'{"error":"%s","detail":"%s"}' % (error, reason.encode())
        head = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        self.transport.write(head + b"content-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n" % len(body) + body)
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app's answer, if it comes, goes nowhere
        self.transport.close()


def tune_gc_for_throughput() -> None:
    """Call once a server process has started up: see
    ``application.collector.tune_for_a_long_running_process``."""
    tune_for_a_long_running_process()


def tune_for_reads(settings: Any) -> None:
    """A process serving reads beside busy threads (the view feed, the refresher, appends):
    a read needs the GIL a few times and waits up to the switch interval each time, so it
    is ``settings.gil_switch_interval`` (1 ms) rather than CPython's 5 ms (DECISIONS, "The
    GIL's switch interval")."""
    sys.setswitchinterval(settings.gil_switch_interval)
