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
   not written again.

Conflicting duplicates (``refuse_conflicts``, what ``POST /v1/events`` asks for): an id
sent again with other content is not a retry but a mistake (or an attempt to rewrite
history), and answering "duplicate" would hide it. The store is asked to refuse duplicates
(``DuplicatesFound``, nothing written): a batch without any, the common case, is appended in
that one call at no extra cost. Otherwise each duplicate is compared with its original (the
stored event read by position, or the first copy in the batch): type and canonical body,
the bytes both sides were encoded to (an original stored at an older schema version is
upcast and encoded again first). Any difference raises ``ConflictingDuplicates`` and
nothing of the batch is stored; true repeats only, and the batch is appended as usual. A
store that cannot refuse before writing (KurrentDB appends stream by stream) is checked
after the append: the conflict is still reported, but the batch's other events are stored.
The backfill and the Kafka inbound agent append without ``refuse_conflicts``: there a
conflicting line or record is reported as a duplicate, as before, and not written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from application.decode import ItemError, validate_items
from events.encoded import EncodedBatch, EncodedOutcomes, append_encoded, encode_events
from events.models import Event
from events.registry import REGISTRY, EventRegistry, encode_body
from events.store import DuplicatesFound, EventStore, RecordedEvent

SPARSE_READ = 4  # read positions one by one when a range would hold this many times more events


@dataclass(frozen=True, slots=True)
class Conflict:
    """Item ``index`` reuses ``event_id`` with other content than its original: the event
    stored at ``position``, or (``first_index``) an earlier item of the same batch."""

    index: int
    event_id: UUID
    position: int | None = None
    first_index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"index": self.index, "event_id": str(self.event_id)}
        if self.position is not None:
            document["position"] = self.position
        if self.first_index is not None:
            document["first_index"] = self.first_index
        return document


class ConflictingDuplicates(Exception):
    """Event ids sent again with other content; ``stored_anyway``: the other events of the
    batch were appended (a store without refusal, see the module docstring)."""

    def __init__(self, conflicts: list[Conflict], *, stored_anyway: bool = False):
        self.conflicts = conflicts
        self.stored_anyway = stored_anyway
        super().__init__(f"{len(conflicts)} event ids sent again with other content")


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
        """Append validated events: made ready for ingestion (``EventRegistry.ingest_ready``:
        personal data sealed), encoded, then appended like any batch (``append_encoded``)."""
        return self.append_encoded(encode_events(self.registry.ingest_ready(list(events))))

    def append_encoded(self, batch: EncodedBatch, *, refuse_conflicts: bool = False) -> EncodedOutcomes:
        """Append a batch in one call (one transaction where the store has them): one
        outcome per event, in input order; the order of positions is ``events.encoded``'s.
        ``refuse_conflicts``: ``ConflictingDuplicates`` when an id comes again with other
        content, and then nothing of the batch is stored (module docstring)."""
        if not refuse_conflicts:
            return append_encoded(self.store, batch)
        try:
            outcomes = append_encoded(self.store, batch, refuse_duplicates=True)
        except DuplicatesFound as found:  # nothing written: compare, then append or refuse
            conflicts = self._conflicts(batch, found.stored, found.repeated)
            if conflicts:
                raise ConflictingDuplicates(conflicts) from None
            return append_encoded(self.store, batch)
        if outcomes.duplicate_count:  # a store that cannot refuse: checked after the append
            stored, repeated = _duplicates_of(batch, outcomes)
            conflicts = self._conflicts(batch, stored, repeated)
            if conflicts:
                raise ConflictingDuplicates(conflicts, stored_anyway=True)
        return outcomes

    def _conflicts(self, batch: EncodedBatch, stored: dict[int, int], repeated: dict[int, int]) -> list[Conflict]:
        conflicts = [
            Conflict(index, UUID(bytes=batch.ids[index]), first_index=first)
            for index, first in sorted(repeated.items())
            if (batch.types[index], batch.data[index]) != (batch.types[first], batch.data[first])
        ]
        originals = {record.position: record for record in self._read_positions(set(stored.values()))}
        for index, position in sorted(stored.items()):
            original = originals.get(position)
            if original is None or not self._same(original, batch, index):
                conflicts.append(Conflict(index, UUID(bytes=batch.ids[index]), position=position))
        return sorted(conflicts, key=lambda conflict: conflict.index)

    def _same(self, original: RecordedEvent, batch: EncodedBatch, index: int) -> bool:
        """Whether item ``index`` holds what ``original`` holds, compared as both are stored."""
        if original.type != batch.types[index]:
            return False
        if original.schema_version == batch.versions[index]:
            return original.data == batch.data[index]
        try:
            current = encode_body(self.registry.decode_stored(original.type, original.schema_version, original.data))
        except Exception:  # an original that no longer decodes cannot be shown to be the same
            return False
        return current == batch.data[index]

    def _read_positions(self, positions: set[int]) -> Iterator[RecordedEvent]:
        """The stored events at ``positions``: one range read when they lie close together
        (a retried batch), else one read each."""
        if not positions:
            return
        low, high = min(positions), max(positions)
        if high - low + 1 <= SPARSE_READ * len(positions):
            yield from (record for record in self.store.read_all(low, limit=high - low + 1)
                        if record.position in positions)
            return
        for position in sorted(positions):
            yield from (record for record in self.store.read_all(position, limit=1) if record.position == position)


def _duplicates_of(batch: EncodedBatch, outcomes: EncodedOutcomes) -> tuple[dict[int, int], dict[int, int]]:
    """The duplicates an append reported: stored ones by the position of their original,
    repeats within the batch by the index of their first copy."""
    first_index: dict[bytes, int] = {}
    stored: dict[int, int] = {}
    repeated: dict[int, int] = {}
    for index, (event_id, duplicate) in enumerate(zip(batch.ids, outcomes.duplicates)):
        first = first_index.setdefault(event_id, index)
        if first != index:
            repeated[index] = first
        elif duplicate:
            stored[index] = outcomes.positions[index]
    return stored, repeated
