"""The fold of ONE identity stream: everything the views need, in compact tuples.

A journey remembers the ids of the events it applied, so a redelivered event
changes nothing. Times are integer microseconds since the Unix epoch (UTC) and
money is integer ten-thousandths of the currency unit (the schema allows four
decimals), so sums are exact and do not depend on the order events arrive in.

Lists are kept in arrival order; their order carries no meaning (readers sort
them by ``(occurred_us, position)``, which is the touch order of the product).
The state is owned by its fold: ``evolve`` mutates the journey in place and
returns it.

``to_bytes``/``from_bytes`` give a canonical orjson document (sorted lists), so
the stream processors can keep one journey per identity key in Kafka and ship
it to the view server: ``from_bytes(j.to_bytes()) == j`` always holds.
"""

from __future__ import annotations

import base64
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson

from events.logged import LoggedEvent
from events.models import CORE_EVENT_TYPES, anonymous_stream, customer_stream

VERSION = 1
HANDLES: frozenset[str] = frozenset(model.TYPE for model in CORE_EVENT_TYPES)
"""Event types folded; any other registered type whose ``KIND`` is ``touch`` is a touch too."""

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)
MICROS_PER_DAY = 86_400_000_000
MONEY_SCALE = 10_000

# (occurred_us, position, channel, campaign | None, type)
TouchFact = tuple[int, int, str, "str | None", str]
# (occurred_us, position, order_id, revenue_e4, currency)
OrderFact = tuple[int, int, str, int, str]
# (occurred_us, position, order_id, amount_e4, currency | None)
RefundFact = tuple[int, int, str, int, "str | None"]
# (occurred_us, position, anonymous stream, customer stream)
LinkFact = tuple[int, int, str, str]
# (occurred_us, position, duplicate customer stream, surviving customer stream)
MergeFact = tuple[int, int, str, str]

_intern = sys.intern


class JourneyFormatError(ValueError):
    """Bytes that are not a journey of this ``VERSION``: rebuild it from the log."""


def micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch of an aware datetime."""
    return (moment - EPOCH) // MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def money_e4(amount: Decimal) -> int:
    return int(amount.scaleb(4))


def link_fact(logged: LoggedEvent) -> LinkFact:
    """The fact an ``identity_linked`` event states."""
    event = logged.event
    return (
        micros(event.occurred_at),
        logged.position,
        anonymous_stream(event.anonymous_id),
        customer_stream(event.customer_id),
    )


def merge_fact(logged: LoggedEvent) -> MergeFact:
    """The fact a ``customers_merged`` event states."""
    event = logged.event
    return (
        micros(event.occurred_at),
        logged.position,
        customer_stream(event.data.duplicate_customer_id),
        customer_stream(event.customer_id),
    )


class IdentityJourney:
    """What one identity stream (``customer-<id>`` or ``anonymous-<id>``) has told us."""

    __slots__ = ("key", "seen", "touches", "orders", "refunds", "links", "merges", "consents")

    def __init__(self, key: str):
        self.key = key
        self.seen: set[int] = set()
        self.touches: list[TouchFact] = []
        self.orders: list[OrderFact] = []
        self.refunds: list[RefundFact] = []
        self.links: list[LinkFact] = []
        self.merges: list[MergeFact] = []
        self.consents: dict[str, tuple[int, int, bool]] = {}

    def apply(self, logged: LoggedEvent) -> bool:
        """Fold one event; False if it was already applied or is of no known kind."""
        event = logged.event
        event_id = event.event_id.int
        seen = self.seen
        if event_id in seen:
            return False
        kind = event.KIND
        if kind == "touch":
            campaign = event.campaign
            self.touches.append(
                (
                    micros(event.occurred_at),
                    logged.position,
                    _intern(event.channel),
                    campaign if campaign is None else _intern(campaign),
                    event.TYPE,
                )
            )
        elif kind == "order":
            data = event.data
            self.orders.append(
                (micros(event.occurred_at), logged.position, data.order_id, money_e4(data.revenue), data.currency)
            )
        elif kind == "refund":
            data = event.data
            self.refunds.append(
                (micros(event.occurred_at), logged.position, data.order_id, money_e4(data.amount), data.currency)
            )
        elif kind == "identity":
            if event.TYPE == "identity_linked":
                self.links.append(link_fact(logged))
            elif event.TYPE == "customers_merged":
                self.merges.append(merge_fact(logged))
            else:
                return False
        elif kind == "consent":
            stamp = (micros(event.occurred_at), logged.position, event.data.granted)
            purpose = event.data.purpose
            current = self.consents.get(purpose)
            if current is None or stamp[:2] > current[:2]:
                self.consents[purpose] = stamp
        else:
            return False
        seen.add(event_id)
        return True

    # --- canonical form ----------------------------------------------------------

    def _canonical(self) -> tuple[Any, ...]:
        return (
            self.key,
            sorted(self.seen),
            sorted(self.touches),
            sorted(self.orders),
            sorted(self.refunds),
            sorted(self.links),
            sorted(self.merges),
            sorted(self.consents.items()),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdentityJourney):
            return NotImplemented
        return self._canonical() == other._canonical()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"IdentityJourney({self.key!r}, events={len(self.seen)}, touches={len(self.touches)}, "
            f"orders={len(self.orders)})"
        )

    def to_bytes(self) -> bytes:
        """A canonical orjson document: equal journeys give equal bytes."""
        key, seen, touches, orders, refunds, links, merges, consents = self._canonical()
        return orjson.dumps(
            {
                "version": VERSION,
                "key": key,
                "seen": base64.b64encode(b"".join(i.to_bytes(16, "big") for i in seen)).decode(),
                "touches": touches,
                "orders": orders,
                "refunds": refunds,
                "links": links,
                "merges": merges,
                "consents": [[purpose, *stamp] for purpose, stamp in consents],
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> "IdentityJourney":
        try:
            doc = orjson.loads(raw)
            if doc.get("version") != VERSION:
                raise JourneyFormatError(f"journey format version {doc.get('version')!r}, expected {VERSION}")
            journey = cls(doc["key"])
            ids = base64.b64decode(doc["seen"], validate=True)
            if len(ids) % 16:
                raise JourneyFormatError("seen: not a whole number of 16-byte event ids")
            journey.seen = {int.from_bytes(ids[i : i + 16], "big") for i in range(0, len(ids), 16)}
            journey.touches = [
                (at, pos, _intern(channel), campaign if campaign is None else _intern(campaign), _intern(kind))
                for at, pos, channel, campaign, kind in doc["touches"]
            ]
            journey.orders = [tuple(order) for order in doc["orders"]]  # type: ignore[misc]
            journey.refunds = [tuple(refund) for refund in doc["refunds"]]  # type: ignore[misc]
            journey.links = [tuple(link) for link in doc["links"]]  # type: ignore[misc]
            journey.merges = [tuple(merge) for merge in doc["merges"]]  # type: ignore[misc]
            journey.consents = {purpose: (at, pos, granted) for purpose, at, pos, granted in doc["consents"]}
        except JourneyFormatError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise JourneyFormatError(f"not a journey document: {error}") from None
        return journey


State = IdentityJourney


def initial_state(key: str) -> IdentityJourney:
    return IdentityJourney(key)


def evolve(journey: IdentityJourney, logged: LoggedEvent) -> IdentityJourney:
    journey.apply(logged)
    return journey


def to_bytes(journey: IdentityJourney) -> bytes:
    return journey.to_bytes()


def from_bytes(raw: bytes) -> IdentityJourney:
    return IdentityJourney.from_bytes(raw)
