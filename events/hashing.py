"""The audit hash chain: each event's hash covers the previous hash and the
event's canonical bytes, so altering, removing or reordering any stored event
changes every hash after it.

The canonical bytes use only what every adapter stores identically (not the
global position, which EventStoreDB assigns after the write): stream, event id,
type, schema version, both times in UTC with microseconds, data and metadata.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from uuid import UUID

import orjson

from events.times import utc_text

GENESIS = bytes(32)


def canonical_bytes(
    *,
    stream: str,
    event_id: UUID,
    type: str,
    schema_version: int,
    occurred_at: datetime,
    recorded_at: datetime,
    data: bytes,
    metadata: bytes,
) -> bytes:
    return orjson.dumps(
        [
            stream,
            str(event_id),
            type,
            schema_version,
            utc_text(occurred_at),
            utc_text(recorded_at),
            data.decode(),
            metadata.decode(),
        ]
    )


def chain(previous: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(previous + canonical).digest()


def canonical_of(event: "RecordedEvent") -> bytes:
    """The canonical bytes of a recorded event, from its stored fields."""
    return canonical_bytes(
        stream=event.stream,
        event_id=event.event_id,
        type=event.type,
        schema_version=event.schema_version,
        occurred_at=event.occurred_at,
        recorded_at=event.recorded_at,
        data=event.data,
        metadata=event.metadata,
    )


from events.store import RecordedEvent  # noqa: E402  (the store port imports nothing from here)
