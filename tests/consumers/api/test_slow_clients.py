"""Slow and greedy clients against a real uvicorn server, over raw sockets: deadlines for
headers and bodies, idle connections closed, a cap on connections. Every test is bounded
by its socket timeouts."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import orjson
import pytest

from consumers.api.app import create_app
from consumers.api.server import BODY_GRACE
from tests.conftest import admin_headers, wire_event

LIMITS = {"header_timeout": 1.0, "body_timeout": 1.0, "keep_alive_timeout": 1.0, "max_connections": 4}


@pytest.fixture
def server(store, settings, serve_app):
    app = create_app(store=store, settings=settings.model_copy(update=LIMITS))
    with serve_app(app) as url:
        parts = urlsplit(url)
        yield parts.hostname, parts.port


def connect(address) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket timeout bounds it)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_connection_that_sends_nothing__is_closed_after_the_header_timeout(server):
    with connect(server) as sock:
        started = time.monotonic()

        assert read_until_closed(sock) == b""
        assert 0.5 < time.monotonic() - started < 5


def test_headers_sent_a_byte_at_a_time__get_408_and_the_connection_closes(server):
    head = request_head("GET", "/healthz", {})
    with connect(server) as sock:
        started = time.monotonic()
        try:
            for byte in head[:-4]:
                sock.send(bytes([byte]))
                time.sleep(0.2)
        except OSError:  # closed under us: what the test wants
            pass
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"error":"request_timeout"' in answer
    assert time.monotonic() - started < 5


def test_body_sent_a_byte_a_second__is_cut_off_with_408_and_nothing_is_stored(server, store, settings):
    body = orjson.dumps(wire_event())
    headers = {**admin_headers(settings.data), "Content-Type": "application/json", "Content-Length": str(len(body))}
    with connect(server) as sock:
        sock.send(request_head("POST", "/v1/events", headers))
        started = time.monotonic()
        try:
            for byte in body:
                sock.send(bytes([byte]))
                time.sleep(0.25)
        except OSError:
            pass
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"body_timeout" in answer and b"connection: close" in answer.lower()
    assert time.monotonic() - started < 5
    assert store.head_position() is None


def test_idle_kept_alive_connection__is_closed_after_the_keep_alive_timeout(server):
    with connect(server) as sock:
        sock.send(request_head("GET", "/healthz", {}))
        first = sock.recv(65536)
        started = time.monotonic()

        rest = read_until_closed(sock)

    assert first.startswith(b"HTTP/1.1 200 ") and rest == b""
    assert time.monotonic() - started < 5


def test_more_connections_than_the_limit__are_answered_503(server):
    waiting = [connect(server) for _ in range(LIMITS["max_connections"])]
    try:
        for sock in waiting:
            sock.send(b"GET /healthz HTTP/1.1\r\n")  # headers begun, not finished
        time.sleep(0.2)
        with connect(server) as sock:
            sock.send(request_head("GET", "/healthz", {}))
            answer = sock.recv(65536)
    finally:
        for sock in waiting:
            sock.close()

    assert answer.startswith(b"HTTP/1.1 503 ")


def test_headers_over_64_kib__are_refused_with_431(server):
    padding = b"".join(b"X-Padding-%d: %s\r\n" % (n, b"a" * 1000) for n in range(66))  # just over, then wait
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + padding)
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_prompt_client__is_served_as_before(server):
    with connect(server) as sock:
        sock.send(request_head("GET", "/healthz", {"Connection": "close"}))
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 200 ")


def test_slow_body_to_any_other_route__has_its_connection_closed_after_the_grace(server):
    headers = {"Content-Type": "application/json", "Content-Length": "1000"}
    with connect(server) as sock:
        sock.send(request_head("POST", "/v1/keys", headers))
        started = time.monotonic()
        try:
            while time.monotonic() - started < 15:
                sock.send(b" ")
                time.sleep(0.25)
        except OSError:  # closed (reset) while still sending: cut off
            pass

    assert time.monotonic() - started < LIMITS["body_timeout"] + BODY_GRACE + 3
