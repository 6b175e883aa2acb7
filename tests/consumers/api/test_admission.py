"""Admission control on POST /v1/events: a real uvicorn server over a real SQLite store whose
writer is held up by another connection's write lock (the writer cannot keep up)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from consumers.api.admission import IngestAdmission
from tests.consumers.api.overload import app_server, body_of, post_in_background, wait_for_pending, writer_held_up

pytestmark = pytest.mark.slow


def test_writer_behind__a_request_past_the_pending_limit_gets_429_and_nothing_of_it_is_stored(tmp_path):
    # given a server holding at most two bodies' bytes, and a writer that cannot write
    first, second, third = body_of(20), body_of(20), body_of(20)
    with app_server(tmp_path, max_pending_bytes=len(first) + len(second)) as server:
        answers: list[httpx.Response] = []
        with writer_held_up(tmp_path / "events.db"):
            waiting = [post_in_background(server, first, answers)]
            wait_for_pending(server.admission, 1)
            waiting.append(post_in_background(server, second, answers))
            wait_for_pending(server.admission, 2)

            # when a third arrives
            refused = server.post(third)

        for thread in waiting:
            thread.join(30)

        # then it is told to come back later, and the two it admitted are stored once the writer can write
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ratelimit-reset"] == refused.headers["retry-after"]
        document = refused.json()
        assert document["error"] == "overloaded" and document["accepted"] == 0
        assert "TOUCHPOINTS_INGEST_MAX_PENDING_BYTES" in document["detail"]
        assert sorted(answer.status_code for answer in answers) == [200, 200]
        assert server.store.count() == 40
        assert server.admission.stats()["pending_bytes"] == 0 and server.admission.stats()["refused"] == 1


def test_writer_behind__a_big_body_is_refused_from_its_headers_before_it_is_sent(tmp_path):
    # given a server with one request waiting for a writer that cannot write
    with app_server(tmp_path, max_pending_bytes=64 * 1024) as server:
        answers: list[httpx.Response] = []
        with writer_held_up(tmp_path / "events.db"):
            waiting = post_in_background(server, body_of(5), answers)
            wait_for_pending(server.admission, 1)

            # when a client announces a 1 MB body and sends only its headers
            host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
            with socket.create_connection((host, port), timeout=10) as connection:
                connection.sendall(b"POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                                   + server.key.encode() + b"\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: 1000000\r\n\r\n")
                head = connection.recv(65536)
        waiting.join(30)

        # then the answer comes at once, without the body
        assert head.startswith(b"HTTP/1.1 429")
        assert b"retry-after:" in head.lower()
        assert answers[0].status_code == 200 and server.store.count() == 5


def test_idle_server__a_body_larger_than_the_pending_limit_is_admitted(tmp_path):
    # given a pending limit smaller than one body, and nothing pending
    body = body_of(50)
    with app_server(tmp_path, max_pending_bytes=len(body) // 10) as server:
        # when it is posted
        answer = server.post(body)

        # then it is stored: a lone request always gets through
        assert answer.status_code == 200 and answer.json()["accepted"] == 50
        assert server.admission.stats()["refused"] == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def busy_admission(clock: Clock, *, max_queue_seconds: float = 1.0) -> IngestAdmission:
    """5 MB answered over 5 s of work (1 MB/s), one request at a time, then quiet for 2 s."""
    admission = IngestAdmission(1 << 30, max_queue_seconds=max_queue_seconds, unknown_length_bytes=1, clock=clock)
    for _ in range(6):
        reserved = admission.admit(1_000_000)
        clock.now += 1.0
        admission.release(reserved)
    clock.now += 2.0
    return admission


def test_retry_after__is_the_pending_bytes_over_the_drain_rate_while_busy():
    # given a writer that drained 1 MB/s while it had work, and 10 MB now pending
    clock = Clock()
    admission = busy_admission(clock, max_queue_seconds=60)
    for _ in range(10):
        admission.admit(1_000_000)

    # when a client is told when to come back, then it is the time those bytes take at that rate
    assert admission.drain_rate() == pytest.approx(1_000_000)
    assert admission.retry_after() == 10


def test_expected_wait_past_max_queue_seconds__refused_below_the_byte_limit():
    # given a writer draining 1 MB/s, 0.6 MB pending, and a 1 s queue target
    clock = Clock()
    admission = busy_admission(clock)
    assert admission.admit(600_000) == 600_000

    # when 0.5 MB more arrives (1.1 s of work), then it is refused; 0.3 MB (0.9 s) is admitted
    assert admission.admit(500_000) is None
    assert admission.admit(300_000) == 300_000
    assert admission.refused == 1


def test_refusal__names_the_limit_it_would_pass_and_its_setting():
    # given a writer draining 1 MB/s with 0.6 MB pending, a 1 s queue target and a 2 MB byte limit
    clock = Clock()
    admission = busy_admission(clock)
    admission.max_pending_bytes = 2_000_000
    admission.admit(600_000)

    # when one body would wait too long, then the refusal names the queue time, not the bytes
    assert admission.admit(500_000) is None
    assert "1.1 s" in admission.last_refusal and "TOUCHPOINTS_INGEST_MAX_QUEUE_SECONDS" in admission.last_refusal

    # and when another would pass the byte limit, it names that limit
    assert admission.admit(1_500_000) is None
    assert "TOUCHPOINTS_INGEST_MAX_PENDING_BYTES" in admission.last_refusal
