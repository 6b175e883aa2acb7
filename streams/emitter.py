"""Clients for services that emit touchpoints: over HTTP (``POST /v1/events``) or by
producing wire JSON to Kafka (``touchpoints.inbound``).

``event_id`` is the idempotency key. An event without one gets a uuid4 when it is
emitted, before the first attempt, so every retry carries the same id and the store
keeps the event once however often it was sent.

    from streams.emitter import HttpEmitter

    # api_key: an `emit` key (touchpoints keys create --scope emit --name my-service)
    with HttpEmitter("http://127.0.0.1:8000", api_key="tp_ab12cd34_...") as emitter:
        emitter.emit({
            "type": "ad_clicked", "occurred_at": "2024-05-02T09:30:00Z",
            "anonymous_id": "cookie:3f9a", "channel": "google_ads", "campaign": "spring",
        })
    # leaving the block flushes; batches of 500, retried on 429/5xx/connection errors
    # (a 429 is waited out as its Retry-After says, up to max_overload_wait seconds a batch)
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import httpx
import orjson
from pydantic import BaseModel

from events.models import json_default
from events.registry import FieldError
from streams.topics import INBOUND_TOPIC

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 507})
OVERLOADED = 429  # the server is behind: waited out (Retry-After), not counted against max_retries


class EmitError(Exception):
    """Base of the emitters' errors."""


@dataclass(frozen=True)
class RejectedEvent:
    """One event the server refused, with every reason it gave."""

    event_id: str | None
    event: dict[str, Any]
    errors: list[FieldError]


class EventsRejected(EmitError):
    """The server refused some events (a 4xx answer): they were not stored and are no
    longer pending; retrying them unchanged cannot succeed. Events of the same batch the
    server did not object to were delivered before this was raised."""

    def __init__(self, rejected: list[RejectedEvent], status: int, detail: str = ""):
        self.rejected = rejected
        self.status = status
        self.detail = detail
        reasons = "; ".join(
            f"{r.event_id}: " + ", ".join(f"{e.field or '(event)'}: {e.reason}" for e in r.errors)
            for r in rejected[:5]
        )
        more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
        super().__init__(f"HTTP {status}: {len(rejected)} event(s) rejected: {reasons}{more}")


class EmitFailed(EmitError):
    """Delivery failed after every retry. The undelivered events stay pending: a later
    ``flush()`` sends them again with the same event ids."""

    def __init__(self, message: str, pending: int):
        self.pending = pending
        super().__init__(f"{message} ({pending} event(s) still pending)")


@dataclass
class EmitterStats:
    accepted: int = 0  # newly stored
    duplicates: int = 0  # already stored (a retry, or a repeat of an id)
    rejected: int = 0
    requests: int = 0
    retries: int = 0
    overloaded: int = 0  # 429 answers waited out
    overload_wait: float = 0.0  # seconds spent waiting them out


def with_event_id(event: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    """A copy of the event as a wire dict, with a new uuid4 ``event_id`` if it had none."""
    if isinstance(event, BaseModel):
        body = orjson.loads(event.model_dump_json(exclude_none=True))
    elif isinstance(event, Mapping):
        body = dict(event)
    else:
        raise TypeError(f"an event is a dict or a touchpoints event model, got {type(event).__name__}")
    if not body.get("event_id"):
        body["event_id"] = str(uuid.uuid4())
    elif not isinstance(body["event_id"], str):
        body["event_id"] = str(body["event_id"])
    return body


def identity_key(body: Mapping[str, Any]) -> bytes:
    """The Kafka key of an event: its identity stream (``customer-<id>`` when the
    customer is known, else ``anonymous-<id>``), as the store names it."""
    if body.get("customer_id"):
        return f"customer-{body['customer_id']}".encode()
    if body.get("anonymous_id"):
        return f"anonymous-{body['anonymous_id']}".encode()
    raise ValueError("customer_id or anonymous_id is required: every event belongs to an identity")


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: between half and all of ``base * 2**attempt``, at most ``cap``."""
    ceiling = min(cap, base * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)


class HttpEmitter:
    """Buffers events and posts them to ``{base_url}/v1/events`` in JSON batches.

    ``emit`` sends a batch once ``batch_size`` events are pending; ``flush`` sends the
    rest; leaving a ``with`` block flushes. Connection errors, timeouts, 408/425/429
    and 5xx answers are retried up to ``max_retries`` times with exponential backoff
    (``backoff`` doubling up to ``max_backoff`` seconds, with jitter; a ``Retry-After``
    header is honoured). A 429 (the server is behind) is retried after the ``Retry-After``
    it names (plus up to a fifth more, so clients told the same second spread out) for as
    long as the batch has waited less than ``max_overload_wait`` seconds in all; it does not
    count against ``max_retries``. Past either bound ``EmitFailed`` is raised and the events
    stay pending: nothing is dropped. A 413 splits the batch. Other 4xx answers are not retried:
    ``EventsRejected`` carries the server's field and reason for each bad event.
    ``api_key`` (an ``emit`` key) is sent as ``Authorization: Bearer``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        batch_size: int = 500,
        max_retries: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_overload_wait: float = 300.0,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.url = base_url.rstrip("/") + "/v1/events"
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_overload_wait = max_overload_wait
        self.stats = EmitterStats()
        self._pending: list[dict[str, Any]] = []
        authorization = {"authorization": f"Bearer {api_key}"} if api_key else {}  # an `emit` key
        self._client = httpx.Client(
            timeout=timeout, headers={"content-type": "application/json", **authorization, **(headers or {})})

    @property
    def pending(self) -> int:
        return len(self._pending)

    def emit(self, event: Mapping[str, Any] | BaseModel) -> str:
        """Queue one event (a wire dict or an event model); returns its ``event_id``."""
        body = with_event_id(event)
        self._pending.append(body)
        if len(self._pending) >= self.batch_size:
            self.flush()
        return body["event_id"]

    def emit_many(self, events: Iterable[Mapping[str, Any] | BaseModel]) -> list[str]:
        return [self.emit(event) for event in events]

    def flush(self) -> None:
        """Send every pending event. Raises ``EmitFailed`` (the rest stays pending) or,
        after delivering everything else, ``EventsRejected``."""
        rejected: list[RejectedEvent] = []
        status = 0
        while self._pending:
            batch = self._pending[: self.batch_size]
            answer = self._deliver(batch)
            del self._pending[: len(batch)]
            if answer is not None:
                rejected.extend(answer.rejected)
                status = answer.status
        if rejected:
            self.stats.rejected += len(rejected)
            raise EventsRejected(rejected, status)

    def close(self) -> None:
        """Flush, then release the connection pool (also if the flush fails)."""
        try:
            self.flush()
        finally:
            self._client.close()

    def __enter__(self) -> "HttpEmitter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the block failed: still deliver what it emitted, but let its error propagate
            self.close()
        except EmitError as error:
            log.error("emitter: flush while leaving a failed block: %s", error)

    # --- one batch -----------------------------------------------------------------

    def _deliver(self, batch: list[dict[str, Any]]) -> EventsRejected | None:
        """Post one batch until it is stored; a returned ``EventsRejected`` lists the
        events the server refused (the others were stored)."""
        response = self._post_with_retries(batch)
        if response.status_code == 200:
            self._count(response)
            return None
        if response.status_code == 413 and len(batch) > 1:
            half = len(batch) // 2
            answers = [self._deliver(batch[:half]), self._deliver(batch[half:])]
            rejected = [r for answer in answers if answer is not None for r in answer.rejected]
            return EventsRejected(rejected, 413) if rejected else None
        if response.status_code == 422:
            return self._split_invalid(batch, response)
        if response.status_code == 409:
            return self._split_conflicting(batch, response)
        detail = _document(response).get("detail") or response.text[:500]
        errors = [FieldError("", f"HTTP {response.status_code}: {detail}")]
        return EventsRejected([RejectedEvent(b.get("event_id"), b, errors) for b in batch], response.status_code, detail)

    def _split_invalid(self, batch: list[dict[str, Any]], response: httpx.Response) -> EventsRejected:
        """A 422 stores nothing of the request: resend the events it did not object to."""
        document = _document(response)
        reasons: dict[int, list[FieldError]] = {}
        for item in document.get("invalid", []):
            index = item.get("index")
            if isinstance(index, int) and 0 <= index < len(batch):
                reasons[index] = [FieldError(e.get("field", ""), e.get("reason", "")) for e in item.get("errors", [])]
        if not reasons:  # an answer we cannot map to events: refuse the whole batch
            detail = document.get("detail") or response.text[:500]
            reasons = {i: [FieldError("", detail)] for i in range(len(batch))}
        return self._resend_others(batch, reasons, 422, document.get("detail", ""))

    def _split_conflicting(self, batch: list[dict[str, Any]], response: httpx.Response) -> EventsRejected:
        """A 409 (an event_id sent again with other content) stores nothing of the request:
        refuse the events it names and resend the others (a conflict it did not list comes
        back in the next answer)."""
        document = _document(response)
        reasons: dict[int, list[FieldError]] = {}
        for item in document.get("conflicts", []):
            index = item.get("index")
            if isinstance(index, int) and 0 <= index < len(batch):
                where = (f"position {item['position']}" if "position" in item
                         else f"item {item.get('first_index')} of the same batch")
                reasons[index] = [FieldError("event_id", f"sent again with other content; the original is at {where}")]
        if not reasons:
            detail = document.get("detail") or response.text[:500]
            reasons = {i: [FieldError("", detail)] for i in range(len(batch))}
        return self._resend_others(batch, reasons, 409, document.get("detail", ""))

    def _resend_others(self, batch: list[dict[str, Any]], reasons: dict[int, list[FieldError]], status: int,
                       detail: str) -> EventsRejected:
        rejected = [RejectedEvent(batch[i].get("event_id"), batch[i], errors) for i, errors in sorted(reasons.items())]
        others = [body for i, body in enumerate(batch) if i not in reasons]
        if others:
            again = self._deliver(others)
            if again is not None:
                rejected.extend(again.rejected)
        return EventsRejected(rejected, status, detail)

    def _post_with_retries(self, batch: Sequence[dict[str, Any]]) -> httpx.Response:
        body = orjson.dumps(list(batch), default=json_default)
        attempt = 0  # failures other than 429
        overloads, waited = 0, 0.0  # 429 answers to this batch, and the seconds waited on them
        while True:
            self.stats.requests += 1
            retry_after = None
            try:
                response = self._client.post(self.url, content=body)
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code not in RETRYABLE_STATUS:
                    return response
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                retry_after = _retry_after(response)
                if response.status_code == OVERLOADED:
                    waited += self._wait_out_overload(retry_after, overloads, waited, problem)
                    overloads += 1
                    continue
            if attempt >= self.max_retries:
                raise EmitFailed(f"POST {self.url} failed {attempt + 1} times; last: {problem}", len(self._pending))
            delay = backoff_delay(attempt, self.backoff, self.max_backoff)
            if retry_after is not None:
                delay = max(delay, min(retry_after, 60.0))
            log.warning("emitter: %s; retry %d/%d in %.2f s", problem, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
            attempt += 1
            self.stats.retries += 1

    def _wait_out_overload(self, retry_after: float | None, overloads: int, waited: float, problem: str) -> float:
        """Sleep as a 429 asks (its Retry-After, else the backoff), within what is left of
        ``max_overload_wait``; the seconds slept. ``EmitFailed`` once nothing is left."""
        left = self.max_overload_wait - waited
        if left <= 0:
            raise EmitFailed(f"POST {self.url}: the server stayed overloaded through {waited:.1f} s of waiting "
                             f"(max_overload_wait); last: {problem}", len(self._pending))
        if retry_after is None:
            delay = backoff_delay(overloads, self.backoff, self.max_backoff)
        else:  # at least the backoff: a server answering "0" still gets a moment, and the bound is reached
            delay = max(retry_after, self.backoff)
        delay = min(delay * random.uniform(1.0, 1.2), left)
        log.info("emitter: server overloaded (429); retrying in %.2f s", delay)
        time.sleep(delay)
        self.stats.retries += 1
        self.stats.overloaded += 1
        self.stats.overload_wait += delay
        return delay

    def _count(self, response: httpx.Response) -> None:
        document = _document(response)
        self.stats.accepted += int(document.get("accepted", 0))
        self.stats.duplicates += int(document.get("duplicates", 0))


class KafkaEmitter:
    """Produces wire JSON to ``touchpoints.inbound`` (kafka-python; acks=all, retried,
    ordered per identity), keyed by identity stream. The platform's inbound agent
    validates and stores each message; invalid ones go to ``touchpoints.deadletter``
    with the reason. ``flush()`` raises ``EmitFailed`` if the broker did not take some
    messages: they stay pending and the next ``flush()`` sends them again (same ids)."""

    def __init__(self, bootstrap: str | Sequence[str], *, topic: str = INBOUND_TOPIC, linger_ms: int = 5,
                 delivery_timeout: float = 30.0, **producer_config: Any):
        self.topic = topic
        self.stats = EmitterStats()
        self._sent: list[tuple[bytes, bytes, Any]] = []  # (key, value, future) not yet confirmed
        self._failed: list[tuple[bytes, bytes]] = []
        self._delivery_timeout = delivery_timeout
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": "touchpoints-emitter",
            "acks": "all",
            "enable_idempotence": True,  # retries neither reorder nor duplicate within a session
            "linger_ms": linger_ms,
            "delivery_timeout_ms": int(delivery_timeout * 1000),
            "request_timeout_ms": min(30_000, int(delivery_timeout * 1000) - linger_ms),
            **producer_config,
        }
        self._producer = self._new_producer()

    @property
    def pending(self) -> int:
        return len(self._sent) + len(self._failed)

    def emit(self, event: Mapping[str, Any] | BaseModel) -> str:
        """Send one event (asynchronously); returns its ``event_id``. Raises ``ValueError``
        if it names no identity (it would have no key)."""
        body = with_event_id(event)
        self._send(identity_key(body), orjson.dumps(body, default=json_default))
        return body["event_id"]

    def emit_many(self, events: Iterable[Mapping[str, Any] | BaseModel]) -> list[str]:
        return [self.emit(event) for event in events]

    def flush(self) -> None:
        """Wait until the broker acknowledged every message sent so far (re-sending
        those an earlier flush reported as failed)."""
        retry, self._failed = self._failed, []
        for key, value in retry:
            self._send(key, value)
        sent, self._sent = self._sent, []
        self._producer.flush(timeout=self._delivery_timeout + 5)
        self._failed = [(key, value) for key, value, future in sent if not future.succeeded()]
        self.stats.accepted += len(sent) - len(self._failed)
        if self._failed:
            error = next(f.exception for _, _, f in sent if not f.succeeded())
            # a producer whose broker lost its state (a restart) may stay broken: start afresh
            self._producer.close(timeout=0)
            self._producer = self._new_producer()
            self.stats.retries += len(self._failed)
            raise EmitFailed(f"the broker did not acknowledge {len(self._failed)} message(s): {error!r}",
                             len(self._failed))

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close(timeout=5)

    def __enter__(self) -> "KafkaEmitter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except EmitError as error:
            log.error("emitter: flush while leaving a failed block: %s", error)

    def _new_producer(self):
        from kafka import KafkaProducer

        return KafkaProducer(**self._config)

    def _send(self, key: bytes, value: bytes) -> None:
        self._sent.append((key, value, self._producer.send(self.topic, key=key, value=value)))


def _document(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the other form HTTP allows: a date
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
