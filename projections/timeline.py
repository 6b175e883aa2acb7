"""Customer timeline: every event of a group across all its identities, in touch order.

The shell resolves the identity, reads the member streams from the store
(``population.members``) and passes their events here; the timeline lists them
by ``(occurred_at, position)`` (an event seen twice is listed once) and sums
them up with the same definitions as every other view (``projections.group``),
computed from the events given, so the list and its summary always agree.

A person whose analytics consent is withdrawn (``projections.consent``) may not be shown:
``withdrawn_at`` tells the shell, which refuses the timeline (the document itself is still
made: erasure finds the person's identities through it).
"""

from __future__ import annotations

from collections.abc import Iterable

from events.logged import LoggedEvent

from projections.consent import ANALYTICS
from projections.figures import iso, money
from projections.group import GroupSummary, summarize
from projections.journey import IdentityJourney
from projections.population import Population

VERSION = 1


def timeline_view(population: Population, identity: str, events: Iterable[LoggedEvent]) -> dict | None:
    """The timeline of the group ``identity`` belongs to; None if it is unknown."""
    root = population.resolve(identity)
    if root is None:
        return None
    members = population.graph.members(root)
    wanted = set(members)
    unique: dict[int, LoggedEvent] = {}
    for logged in events:
        if logged.stream in wanted:
            unique.setdefault(logged.event.event_id.int, logged)
    ordered = sorted(unique.values(), key=lambda logged: (logged.event.occurred_at, logged.position))
    journeys: dict[str, IdentityJourney] = {}
    for logged in ordered:
        journey = journeys.get(logged.stream)
        if journey is None:
            journey = journeys[logged.stream] = IdentityJourney(logged.stream)
        journey.apply(logged)
    group = summarize(root, members, journeys)
    return {
        "identity": root,
        "identities": list(members),
        **_summary(group),
        "events": [_event_row(logged) for logged in ordered],
    }


def withdrawn_at(document: dict) -> str | None:
    """When the person of a timeline document withdrew analytics consent (its ``consents``
    are the group's latest stamps), None if they have not."""
    stamp = document["consents"].get(ANALYTICS)
    return None if stamp is None or stamp["granted"] else stamp["occurred_at"]


def _summary(group: GroupSummary) -> dict:
    first_touch, first_order = group.first_touch, group.first_order
    return {
        "first_contact": None
        if first_touch is None
        else {"occurred_at": iso(first_touch[0]), "channel": first_touch[2], "campaign": first_touch[3]},
        "first_order": None
        if first_order is None
        else {"occurred_at": iso(first_order[0]), "order_id": first_order[2], "revenue": money(first_order[3])},
        "touch_count": len(group.touches),
        "order_count": len(group.orders),
        "revenue": money(group.gross_e4),
        "refunded": money(group.refunded_e4),
        "net_revenue": money(group.net_e4),
        "consents": {
            purpose: {"granted": granted, "occurred_at": iso(at)}
            for purpose, (at, _, granted) in sorted(group.consents.items())
        },
    }


def _event_row(logged: LoggedEvent) -> dict:
    event = logged.event
    return {
        "event_id": str(event.event_id),
        "position": logged.position,
        "occurred_at": iso(event.occurred_at),
        "recorded_at": iso(logged.recorded_at),
        "type": event.TYPE,
        "kind": event.KIND,
        "channel": event.channel,
        "campaign": event.campaign,
        "source": event.source,
        "identity": logged.stream,
        "customer_id": event.customer_id,
        "anonymous_id": event.anonymous_id,
        "data": event.data.model_dump(mode="json", exclude_none=True),
    }
