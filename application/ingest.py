"""Decode, encode, append: the one ingestion path behind ``POST /v1/events``, the CLI
backfill (``application.bulk_ingest``) and the Kafka inbound agent (``streams.inbound``).

1. Decode: items are validated through the registry by ``application.decode``, whole
   request first; the caller decides what to do with invalid items (HTTP refuses the
   request, the CLI writes them to a rejects file, the inbound agent dead-letters them).
2. Encode: the valid events are encoded once into an ``events.encoded.EncodedBatch``
   (where decoding runs in other processes, they do this too and send the batch back).
3. Append: ``Ingestor.append_encoded`` appends the batch in one call, in input order:
   every stream gets its events in input order and the log's positions follow it (but
   for stores that can only append stream by stream: ``events.encoded``).
   ``event_id`` is the emitter's idempotency key: an id seen earlier in the same batch
   or already stored is reported as a duplicate with the original's position and is
   not written again (its content is not compared).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from application.decode import ItemError, validate_items
from events.encoded import EncodedBatch, EncodedOutcomes, append_encoded, encode_events
from events.models import Event
from events.registry import REGISTRY, EventRegistry
from events.store import EventStore


class Ingestor:
    """Validates wire-format items through the registry and appends them to the store."""

    def __init__(self, store: EventStore, registry: EventRegistry = REGISTRY):
        self.store = store
        self.registry = registry

    def validate_batch(self, items: Sequence[Any]) -> tuple[list[Event], list[ItemError]]:
        """Validate every item (parsed JSON). Returns the valid events in input order and
        one ``ItemError`` per invalid item; nothing is appended."""
        decoded = validate_items(items, self.registry)
        return decoded.events, decoded.invalid

    def append(self, events: Sequence[Event]) -> EncodedOutcomes:
        """Append validated events: encoded, then appended like any batch (``append_encoded``)."""
        return self.append_encoded(encode_events(events))

    def append_encoded(self, batch: EncodedBatch) -> EncodedOutcomes:
        """Append a batch in one call (one transaction where the store has them): one
        outcome per event, in input order; the order of positions is ``events.encoded``'s."""
        return append_encoded(self.store, batch)
