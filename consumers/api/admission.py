"""Admission control for ingestion: refuse (429) instead of queueing without bound.

Every ``POST /v1/events`` body waits somewhere until it is answered: being read, in the
decoders' queue, in the writer's group-commit queue. Those waits are one queue in front of
one serial stage, the SQLite writer, so it is measured as one: the bytes of request bodies
admitted and not yet answered, and the rate at which answers drain them while there is work
(bytes answered over the time something was pending, the last few seconds). A request is
refused at once, before its body is read, when admitting it would take the pending bytes
past ``TOUCHPOINTS_INGEST_MAX_PENDING_BYTES`` (memory) or make the expected wait, pending
bytes over that rate, longer than ``TOUCHPOINTS_INGEST_MAX_QUEUE_SECONDS`` (latency: the
writer cannot keep up). Its ``Content-Length`` is known up front; a body without one counts
as the largest allowed, ``TOUCHPOINTS_MAX_BODY_BYTES``, until it has been read. A request
that arrives when nothing is pending is always admitted, so a body of any allowed size gets
through an idle server.

The answer carries ``Retry-After`` and ``X-RateLimit-Reset`` (both in seconds from now, the
form tracking SDKs read): the expected wait of what is pending, at least 1 s (5 s when
requests wait and nothing was answered lately: the writer is stuck, e.g. on a lock). The
limits count bytes on the wire: a gzip body is counted compressed, and its inflated form is
capped by the body limit.

The relay falling behind the log is no reason to refuse: the log of record is the store,
what waits for the relay is on disk (not in this process), and ingestion keeps accepting
while the broker is down. What the bundled broker holds grows with every event it was
given (tansu 0.6 keeps every record), not with the relay's backlog.

All of this runs on the server's event loop: no lock is needed.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from consumers.api.tracking_paths import TRACKING_PATHS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INGEST_PATHS = frozenset({"/v1/events", *TRACKING_PATHS})
RATE_WINDOW_SECONDS = 5.0  # how far back answered bytes count towards the drain rate
STALLED_RETRY_AFTER = 5  # seconds, when nothing was answered in the window (the writer is stuck)
MAX_RETRY_AFTER = 60
HELD_KEPT = 10_000  # admitted requests whose time from admission to answer the stats describe


class IngestAdmission:
    """The ingestion bodies admitted and not yet answered: at most ``max_pending_bytes`` of
    them, and no more than the writer drains in ``max_queue_seconds`` at its recent rate."""

    def __init__(self, max_pending_bytes: int, *, max_queue_seconds: float, unknown_length_bytes: int,
                 clock: Callable[[], float] = time.monotonic):
        self.max_pending_bytes = max_pending_bytes
        self.max_queue_seconds = max_queue_seconds
        self.unknown_length_bytes = unknown_length_bytes
        self.pending_bytes = 0
        self.pending_requests = 0
        self.admitted = 0
        self.refused = 0
        self.peak_pending_bytes = 0
        self.last_refusal = ""  # why the latest refused request was refused
        self._clock = clock
        self._busy = 0.0  # seconds during which some request was pending, in all
        self._last_change = clock()
        self._answered: deque[tuple[float, int, float]] = deque()  # (when, bytes, busy total then) in the window
        self._answered_bytes = 0  # their bytes
        self._held: deque[float] = deque(maxlen=HELD_KEPT)  # seconds from admission to answer, latest last

    def admit(self, declared_length: int | None) -> int | None:
        """Reserve room for a body of ``declared_length`` bytes (None: unknown); the bytes
        reserved, or None when the request must be refused."""
        size = self.unknown_length_bytes if declared_length is None else declared_length
        if self.pending_requests:
            refusal = self._refusal(size)
            if refusal is not None:
                self.refused += 1
                self.last_refusal = refusal
                return None
        self._tick()
        self.pending_bytes += size
        self.pending_requests += 1
        self.admitted += 1
        self.peak_pending_bytes = max(self.peak_pending_bytes, self.pending_bytes)
        return size

    def _refusal(self, size: int) -> str | None:
        """Why a body of ``size`` bytes may not join what is pending (None: it may), naming
        the limit it would pass and the setting that sets it."""
        if self.pending_bytes + size > self.max_pending_bytes:
            return (f"{self.pending_bytes} bytes of request bodies are waiting and {size} more would pass "
                    f"the limit of {self.max_pending_bytes} (TOUCHPOINTS_INGEST_MAX_PENDING_BYTES)")
        wait = self.expected_wait(size)
        if wait is not None and wait > self.max_queue_seconds:
            return (f"the {self.pending_bytes + size} bytes of request bodies waiting, this one included, "
                    f"would take {wait:.1f} s to store at the recent rate, more than "
                    f"{self.max_queue_seconds:g} s (TOUCHPOINTS_INGEST_MAX_QUEUE_SECONDS)")
        return None

    def shrink(self, reserved: int, actual: int) -> int:
        """A body turned out smaller than reserved (it had no length): hold only ``actual``."""
        if actual < reserved:
            self.pending_bytes -= reserved - actual
            return actual
        return reserved

    def release(self, reserved: int, admitted_at: float | None = None) -> None:
        """The request was answered (or abandoned): its bytes no longer wait."""
        now = self._tick()
        self.pending_bytes -= reserved
        self.pending_requests -= 1
        if admitted_at is not None:
            self._held.append(now - admitted_at)
        self._answered.append((now, reserved, self._busy))
        self._answered_bytes += reserved
        self._forget_before(now - RATE_WINDOW_SECONDS)

    def drain_rate(self) -> float | None:
        """Bytes a second answered while there was work: the bytes answered in the last
        ``RATE_WINDOW_SECONDS`` over the busy time they took (time with nothing pending does
        not count, so a quiet server is not mistaken for a slow one). None without two
        answers in the window."""
        self._forget_before(self._clock() - RATE_WINDOW_SECONDS)
        if len(self._answered) < 2:
            return None
        first_bytes, first_busy = self._answered[0][1], self._answered[0][2]
        busy = self._answered[-1][2] - first_busy
        return (self._answered_bytes - first_bytes) / busy if busy > 0 else None

    def expected_wait(self, extra: int = 0) -> float | None:
        """Seconds the pending bytes (plus ``extra``) take to drain at ``drain_rate``; None: unknown."""
        rate = self.drain_rate()
        return (self.pending_bytes + extra) / rate if rate else None

    def retry_after(self) -> int:
        """Whole seconds until the pending bytes are likely drained, at least 1."""
        wait = self.expected_wait()
        if wait is None:  # nothing answered lately although requests wait: the writer is stuck
            return STALLED_RETRY_AFTER if self.pending_requests else 1
        return max(1, min(MAX_RETRY_AFTER, math.ceil(wait)))

    def now(self) -> float:
        return self._clock()

    def stats(self) -> dict[str, float]:
        held = sorted(self._held)
        rate = self.drain_rate()
        return {
            "pending_bytes": self.pending_bytes, "pending_requests": self.pending_requests,
            "peak_pending_bytes": self.peak_pending_bytes, "max_pending_bytes": self.max_pending_bytes,
            "max_queue_seconds": self.max_queue_seconds, "admitted": self.admitted, "refused": self.refused,
            "drain_bytes_per_second": round(rate) if rate else None,
            "held_p99_seconds": round(held[int(len(held) * 0.99)], 3) if held else 0.0,
        }

    def _tick(self) -> float:
        now = self._clock()
        if self.pending_requests:
            self._busy += now - self._last_change
        self._last_change = now
        return now

    def _forget_before(self, horizon: float) -> None:
        answered = self._answered
        while answered and answered[0][0] < horizon:
            self._answered_bytes -= answered.popleft()[1]


class AdmissionMiddleware:
    """ASGI middleware: ``IngestAdmission`` in front of the ingestion routes (``paths``, POST)."""

    def __init__(self, app: ASGIApp, admission: IngestAdmission, paths: frozenset[str] = INGEST_PATHS):
        self.app = app
        self.admission = admission
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        admission = self.admission
        declared = _content_length(scope)
        reserved = admission.admit(declared)
        if reserved is None:
            await _refuse(send, admission)
            return
        admitted_at = admission.now()
        received = 0

        async def counting_receive() -> Message:
            nonlocal received, reserved
            message = await receive()
            if declared is None and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    reserved = admission.shrink(reserved, received)
            return message

        try:
            await self.app(scope, counting_receive, send)
        finally:
            admission.release(reserved, admitted_at)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return max(int(value), 0)
            except ValueError:
                return None  # the route answers 400 for it
    return None


async def _refuse(send: Send, admission: IngestAdmission) -> None:
    seconds = admission.retry_after()
    body = orjson.dumps({
        "error": "overloaded",
        "detail": f"ingestion is behind: {admission.last_refusal}; nothing was stored, retry after {seconds} s",
        "retry_after": seconds,
        "accepted": 0,
    })
    await send({
        "type": "http.response.start",
        "status": 429,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(seconds).encode()),
            (b"x-ratelimit-reset", str(seconds).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})


def install_admission(app: Any, settings: Any) -> IngestAdmission:
    """Put admission control in front of ``app``'s ingestion routes, as ``settings`` (an
    ``application.settings.Settings``) bound it; kept as ``app.state.admission``."""
    admission = IngestAdmission(settings.ingest_max_pending_bytes, max_queue_seconds=settings.ingest_max_queue_seconds,
                                unknown_length_bytes=settings.max_body_bytes)
    app.add_middleware(AdmissionMiddleware, admission=admission)
    app.state.admission = admission
    return admission
