"""Kafka ingestion: the Faust agent on ``touchpoints.inbound``.

Services produce wire-format JSON (one event per record) to ``touchpoints.inbound``.
The agent takes records in batches and ingests them like ``POST /v1/events`` and
``touchpoints ingest`` do (``application.ingest``): it decodes them with the same
registry, appends the valid ones as one encoded batch, positions in record order
(idempotent by ``event_id``: a redelivered record is a duplicate, not a second event),
and sends every invalid one to ``touchpoints.deadletter``. Nothing is dropped silently.

Dead-letter record format (one record per refused inbound record):

* key: the inbound record's key, unchanged.
* headers: ``error_field`` and ``error_reason`` (the first error), ``error_count``,
  ``source_topic``, ``source_partition``, ``source_offset``.
* value: JSON ``{"source": {"topic", "partition", "offset", "key"}, "errors":
  [{"field", "reason"}, ...], "original_base64": <the exact original bytes>,
  "original": <the same bytes as text, or null when they are not UTF-8>}``.

Offsets: a batch is acknowledged (so its offsets may be committed) only once its
valid events are in the store and its dead letters are acknowledged by the broker.
While the store is unavailable the agent retries with backoff and acknowledges
nothing; if the worker is stopped during such an outage it exits without
committing, like a crash, so the batch is delivered again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from application.decode import decode_documents
from application.ingest import Ingestor
from events.encoded import EncodedBatch
from events.registry import EventRegistry, FieldError
from events.store import EventStoreError
from streams.topics import DEADLETTER_TOPIC, INBOUND_TOPIC

log = logging.getLogger(__name__)

EMPTY_RECORD = FieldError("", "empty record: expected a JSON object")
EXIT_UNAPPENDED = 75  # EX_TEMPFAIL: stopped while a batch could not be stored yet
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused inbound record and why."""

    record: InboundRecord
    errors: list[FieldError]

    def headers(self) -> list[tuple[str, bytes]]:
        first = self.errors[0] if self.errors else FieldError("", "unknown")
        return [
            ("error_field", first.field.encode()),
            ("error_reason", first.reason.encode()),
            ("error_count", str(len(self.errors)).encode()),
            ("source_topic", self.record.topic.encode()),
            ("source_partition", str(self.record.partition).encode()),
            ("source_offset", str(self.record.offset).encode()),
        ]

    def value(self) -> bytes:
        original = self.record.value or b""
        try:
            text: str | None = original.decode()
        except UnicodeDecodeError:
            text = None
        key = self.record.key
        return orjson.dumps(
            {
                "source": {
                    "topic": self.record.topic,
                    "partition": self.record.partition,
                    "offset": self.record.offset,
                    "key": key.decode(errors="replace") if key is not None else None,
                },
                "errors": [error.as_dict() for error in self.errors],
                "original_base64": base64.b64encode(original).decode(),
                "original": text,
            }
        )


@dataclass
class Sorted:
    """One batch split into what to append and what to dead-letter."""

    batch: EncodedBatch = field(default_factory=EncodedBatch)  # the valid records, in record order
    dead: list[DeadLetter] = field(default_factory=list)  # the others, in record order


def sort_batch(records: Sequence[InboundRecord], registry: EventRegistry) -> Sorted:
    """Decode a batch of records, one JSON document each, as every ingestion decodes
    (``application.decode``): the valid ones are encoded in record order, which is the
    order their positions will follow, as for HTTP requests and the CLI."""
    errors: dict[int, list[FieldError]] = {}  # by index in records
    present: list[int] = []
    values: list[bytes] = []
    for index, record in enumerate(records):
        if record.value is None:
            errors[index] = [EMPTY_RECORD]
        else:
            present.append(index)
            values.append(record.value)
    decoded = decode_documents(values, registry)
    errors.update((present[item.index], item.errors) for item in decoded.invalid)
    result = Sorted(dead=[DeadLetter(records[index], errors[index]) for index in sorted(errors)])
    result.batch.extend(registry.ingest_ready(decoded.events))
    return result


class InboundHandler:
    """What the agent does with one batch; kept apart from Faust so tests call it directly.

    ``send_dead_letter(key, value, headers)`` must return an awaitable that completes
    when the broker acknowledged the record."""

    def __init__(self, ingestor: Ingestor, send_dead_letter: Any, *, max_backoff: float = 5.0):
        self.ingestor = ingestor
        self.send_dead_letter = send_dead_letter
        self.max_backoff = max_backoff
        self.counts = {"received": 0, "appended": 0, "duplicates": 0, "dead_lettered": 0, "retries": 0}
        self.last_error: str | None = None

    async def handle(self, records: Sequence[InboundRecord]) -> None:
        sorted_batch = sort_batch(records, self.ingestor.registry)
        self.counts["received"] += len(records)
        if len(sorted_batch.batch):
            outcomes = await self._retrying("store", asyncio.to_thread, self.ingestor.append_encoded, sorted_batch.batch)
            duplicates = outcomes.duplicate_count
            self.counts["duplicates"] += duplicates
            self.counts["appended"] += len(outcomes) - duplicates
        for dead in sorted_batch.dead:
            await self._retrying("dead-letter topic", self._dead_letter, dead)
            self.counts["dead_lettered"] += 1
            log.info("dead-lettered %s[%d]@%d: %s", dead.record.topic, dead.record.partition,
                     dead.record.offset, "; ".join(f"{e.field}: {e.reason}" for e in dead.errors))

    async def _dead_letter(self, dead: DeadLetter) -> None:
        acknowledged = await self.send_dead_letter(dead.record.key, dead.value(), dead.headers())
        await acknowledged

    async def _retrying(self, what: str, call: Any, *args: Any) -> Any:
        """Retry a store append or a dead-letter send until it succeeds: the batch is not
        acknowledged meanwhile, so nothing is lost while the store or broker is away."""
        backoff = 0.1
        while True:
            try:
                return await call(*args)
            except (EventStoreError, OSError, KafkaError, ProducerSendError) as error:
                self.counts["retries"] += 1
                self.last_error = f"{what}: {type(error).__name__}: {error}"
                log.warning("inbound: %s; retrying in %.1f s", self.last_error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "last_error": self.last_error}


def register_inbound(
    app: Any,
    ingestor: Ingestor,
    *,
    inbound_topic: str = INBOUND_TOPIC,
    deadletter_topic: str = DEADLETTER_TOPIC,
    batch_size: int = 500,
    within: float = 0.1,
) -> InboundHandler:
    """Add the inbound agent to a Faust app; returns its handler (for stats)."""
    source = app.topic(inbound_topic, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    target = app.topic(deadletter_topic, key_serializer="raw", value_serializer="raw")

    async def send_dead_letter(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        # force=True: send now, not attached to the current event's ack
        return await target.send(key=key, value=value, headers=headers, force=True)

    handler = InboundHandler(ingestor, send_dead_letter)

    @app.agent(source, name="touchpoints.append_inbound")
    async def append_inbound(stream: Any) -> None:
        async for events in stream.take_events(batch_size, within=within):
            records = [
                InboundRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in events
            ]
            await _finish_even_if_stopped(handler.handle(records), len(records))

    return handler


async def _finish_even_if_stopped(work: Any, size: int) -> None:
    """Run one batch to its end even if the worker is stopping: Faust acknowledges a
    ``take_events`` batch when the agent is cancelled, so an unfinished batch must not
    reach that point. If it cannot finish within the grace period (store down), exit
    at once without committing: the records are delivered again after a restart."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            done, _ = await asyncio.wait({task}, timeout=STOP_GRACE_SECONDS)
        except asyncio.CancelledError:
            done = set()
        if task not in done or task.exception() is not None:
            log.critical("stopped while %d inbound records were not stored: exiting without committing "
                         "their offsets (they will be delivered again)", size)
            os._exit(EXIT_UNAPPENDED)
        raise
