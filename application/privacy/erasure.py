"""Erasure: destroy every key of a person and record it as a ``customer_erased`` event.

The person is the group the identity belongs to (every customer id and anonymous id
linked to it, as the views group them). Their keys go; their events stay, byte for byte,
so the hash chain still verifies and every aggregate is what it was: only the values
behind their tokens are gone, in the store, on Kafka, in the journeys' changelog, in
snapshots and saved views (none of which ever held more than tokens and ciphertext).

The ``customer_erased`` event names the person's stored identities (tokens, never a
value) and how many keys went. Its ``occurred_at`` is the person's last event's: the
views' "now" is the newest ``occurred_at`` folded, and an erasure must not move it.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

from application.privacy.policy import Sealing
from application.privacy.pseudonyms import ANONYMOUS_STREAM, CUSTOMER_STREAM, stream_key_id, subject_key_id
from application.privacy.reading import ReadEvents, TimelineSource, find_timeline
from events.encoded import append_encoded, encode_events
from events.models import CustomerErased, ErasureData
from events.store import EventStore


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What ``erase`` did. ``identities`` are stored forms (tokens), never values."""

    identity: str  # as the request named it
    root: str
    identities: list[str]
    events: int  # the person's events, all kept (now unreadable where sealed)
    keys_destroyed: int
    journal_emptied: bool
    position: int  # of the customer_erased event

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase(
    identity: str, *, views: TimelineSource, read_events: ReadEvents, store: EventStore, sealing: Sealing
) -> ErasureReport | None:
    """Erase the person ``identity`` names (any of their ids, in plaintext, or a stored
    form); None if no one is known by it."""
    found = find_timeline(views, identity, read_events, sealing)
    if found is None:
        return None
    document, events = found
    keys = sealing.keys()
    pepper = keys.pepper()
    members: list[str] = document["identities"]
    key_ids = {stream_key_id(pepper, stream) for stream in members}
    key_ids.update(subject_key_id(pepper, e.event.customer_id, e.event.anonymous_id) for e in events)
    # Not the identities their events merely name (a link that lost to another person's):
    # those values are sealed under this person's keys already; their own keys are another's.
    key_ids.discard(None)
    destroyed = keys.destroy(sorted(key_ids))  # type: ignore[arg-type]
    root: str = document["identity"]
    record = CustomerErased(
        event_id=uuid.uuid4(),
        occurred_at=max(e.event.occurred_at for e in events),
        customer_id=root.removeprefix(CUSTOMER_STREAM) if root.startswith(CUSTOMER_STREAM) else None,
        anonymous_id=root.removeprefix(ANONYMOUS_STREAM) if root.startswith(ANONYMOUS_STREAM) else None,
        data=ErasureData(identities=sorted(members), keys_destroyed=destroyed.keys),
    )
    outcome = append_encoded(store, encode_events([record]))
    return ErasureReport(identity, root, sorted(members), len(events), destroyed.keys, destroyed.journal_emptied,
                         outcome.positions[0])
