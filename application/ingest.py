"""Validate-then-append: the one ingestion service behind HTTP, the CLI and the Kafka inbound agent.

A batch is validated whole before anything is appended; the caller decides what to do
with invalid items (HTTP refuses the request, the CLI writes them to a rejects file, the
inbound agent dead-letters them). ``event_id`` is the emitter's idempotency key: an id
seen earlier in the same batch or already stored is reported as a duplicate with the
original's position and is not written again (its content is not compared).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from events.encoded import EncodedBatch, EncodedOutcomes, append_encoded
from events.models import Event
from events.registry import REGISTRY, EventRegistry, FieldError, InvalidEvent, encode_body
from events.store import AppendOutcome, EventStore, NewEvent, StreamAppend, StreamState


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why item ``index`` (0-based, in the order received) of a batch was refused."""

    index: int
    errors: list[FieldError]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "errors": [error.as_dict() for error in self.errors]}


class Ingestor:
    """Validates wire-format items through the registry and appends them to the store."""

    def __init__(self, store: EventStore, registry: EventRegistry = REGISTRY):
        self.store = store
        self.registry = registry

    def validate_batch(self, items: Sequence[Any]) -> tuple[list[Event], list[ItemError]]:
        """Validate every item (parsed JSON). Returns the valid events in input order and
        one ``ItemError`` per invalid item; nothing is appended."""
        events: list[Event] = []
        invalid: list[ItemError] = []
        validate = self.registry.validate
        for index, item in enumerate(items):
            try:
                events.append(validate(item))
            except InvalidEvent as error:
                invalid.append(ItemError(index, error.errors))
        return events, invalid

    def append(self, events: Sequence[Event]) -> list[AppendOutcome]:
        """Append valid events in one ``append_batch`` call (one transaction where the store
        has them); returns one outcome per input event, in input order.

        Events are grouped by stream (streams in order of first appearance), so each stream
        keeps the input order, while positions across streams follow the grouping."""
        return self.append_new([(event.stream, to_new_event(event)) for event in events])

    def append_encoded(self, batch: EncodedBatch) -> EncodedOutcomes:
        """Append events already validated and encoded (``events.encoded``): positions follow
        the input order; the fast path of HTTP batches and bulk loads."""
        return append_encoded(self.store, batch)

    def append_new(self, items: Sequence[tuple[str, NewEvent]]) -> list[AppendOutcome]:
        """Like ``append`` for events already encoded as ``(stream, NewEvent)`` pairs."""
        by_stream: dict[str, list[NewEvent]] = {}
        first_index: dict[Any, int] = {}
        repeats: list[tuple[int, int]] = []  # (index, index of the first with that id)
        slots: list[tuple[str, int] | None] = []
        for index, (stream, new) in enumerate(items):
            seen = first_index.get(new.event_id)
            if seen is not None:
                repeats.append((index, seen))
                slots.append(None)
                continue
            first_index[new.event_id] = index
            pending = by_stream.setdefault(stream, [])
            slots.append((stream, len(pending)))
            pending.append(new)
        if not by_stream:
            return []
        results = self.store.append_batch(
            [StreamAppend(stream, pending, StreamState.ANY) for stream, pending in by_stream.items()]
        )
        outcomes_by_stream = {result.stream: result.outcomes for result in results}
        outcomes: list[AppendOutcome | None] = [
            None if slot is None else outcomes_by_stream[slot[0]][slot[1]] for slot in slots
        ]
        for index, seen in repeats:
            original = outcomes[seen]
            assert original is not None
            outcomes[index] = AppendOutcome(original.event_id, original.position, original.stream_version, True)
        return outcomes  # type: ignore[return-value]


def to_new_event(event: Event) -> NewEvent:
    """The store's envelope of a validated event (canonical body, current schema version)."""
    return NewEvent(
        event_id=event.event_id,
        type=event.TYPE,
        schema_version=event.SCHEMA_VERSION,
        occurred_at=event.occurred_at,
        data=encode_body(event),
    )

