"""The fold of ONE identity stream: everything the views need, in compact tuples.

A journey remembers the ids of the events it applied, so a redelivered event
changes nothing. Times are the events' own aware UTC datetimes (shared with the
decoded event: folding does no date arithmetic and allocates no time object);
money is integer ten-thousandths of the currency unit (the schema allows four
decimals), so sums are exact and do not depend on the order events arrive in.

Facts are kept in arrival order; their order carries no meaning (readers sort
them by ``(occurred_at, position)``, which is the touch order of the product).
A journey is a mutable aggregate: ``evolve`` updates it in place and returns it
(a copy per event would cost more than the fold itself).

``to_bytes``/``from_bytes`` give a canonical orjson document (sorted lists), so
the stream processors can keep one journey per identity key in Kafka and ship
it to the view server: ``from_bytes(j.to_bytes()) == j`` always holds.
"""

from __future__ import annotations

import sys
from binascii import a2b_base64 as _unb64, b2a_base64 as _b64  # base64 in C, strict on input
from collections.abc import Iterable, KeysView, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import orjson

from events.logged import LoggedEvent
from events.models import CORE_EVENT_TYPES, anonymous_stream, customer_stream

VERSION = 3  # 3: a touch fact also holds the touch's source
HANDLES: frozenset[str] = frozenset(model.TYPE for model in CORE_EVENT_TYPES)
"""Event types folded; any other registered type whose ``KIND`` is ``touch`` is a touch too."""

DAY = timedelta(days=1)
MONEY_SCALE = 10_000

# (occurred_at, position, channel, campaign | None, type, source | None)
TouchFact = tuple[datetime, int, str, "str | None", str, "str | None"]
# (occurred_at, position, order_id, revenue_e4, currency)
OrderFact = tuple[datetime, int, str, int, str]
# (occurred_at, position, order_id, amount_e4, currency | None)
RefundFact = tuple[datetime, int, str, int, "str | None"]
# (occurred_at, position, anonymous stream, customer stream)
LinkFact = tuple[datetime, int, str, str]
# (occurred_at, position, duplicate customer stream, surviving customer stream)
MergeFact = tuple[datetime, int, str, str]
# (occurred_at, position, granted), per purpose
ConsentStamp = tuple[datetime, int, bool]

_intern = sys.intern
_NO_CONSENTS: Mapping[str, ConsentStamp] = MappingProxyType({})  # shared, read-only


class JourneyFormatError(ValueError):
    """Bytes that are not a journey of this ``VERSION``: rebuild it from the log."""


def money_e4(amount: Decimal) -> int:
    return int(amount.scaleb(4))


def link_fact(logged: LoggedEvent) -> LinkFact:
    """The fact an ``identity_linked`` event states."""
    event = logged.event
    return (
        event.occurred_at,
        logged.position,
        anonymous_stream(event.anonymous_id),
        customer_stream(event.customer_id),
    )


def merge_fact(logged: LoggedEvent) -> MergeFact:
    """The fact a ``customers_merged`` event states."""
    event = logged.event
    return (
        event.occurred_at,
        logged.position,
        customer_stream(event.data.duplicate_customer_id),
        customer_stream(event.customer_id),
    )


class IdentityJourney:
    """What one identity stream (``customer-<id>`` or ``anonymous-<id>``) has told us.

    ``index`` maps the id (``UUID.int``) of every applied event to its touch
    fact, or to None for the other kinds: one table both remembers what was
    applied and holds the touches, so folding a touch costs a single lookup and
    insertion. The other kinds' facts live in lists that start as the shared
    empty tuple and become lists on their first fact (most identities never
    order, link or merge).
    """

    __slots__ = ("key", "index", "orders", "refunds", "links", "merges", "consents")

    def __init__(self, key: str):
        self.key = key
        self.index: dict[int, TouchFact | None] = {}
        self.orders: Sequence[OrderFact] = ()
        self.refunds: Sequence[RefundFact] = ()
        self.links: Sequence[LinkFact] = ()
        self.merges: Sequence[MergeFact] = ()
        self.consents: Mapping[str, ConsentStamp] = _NO_CONSENTS

    @property
    def touches(self) -> list[TouchFact]:
        """The touch facts, in no particular order (a new list each time)."""
        return [fact for fact in self.index.values() if fact is not None]

    @property
    def seen(self) -> KeysView[int]:
        """The ids (``UUID.int``) of every event applied."""
        return self.index.keys()

    def apply(self, logged: LoggedEvent) -> str | None:
        """Fold one event; its ``KIND`` if applied, None if it was applied before or
        is of no known kind."""
        event = logged.event
        event_id = event.event_id.int
        index = self.index
        if event_id in index:
            return None
        kind = event.KIND
        if kind == "touch":
            campaign, source = event.campaign, event.source
            index[event_id] = (
                event.occurred_at,
                logged.position,
                _intern(event.channel),
                campaign if campaign is None else _intern(campaign),
                event.TYPE,
                source if source is None else _intern(source),
            )
            return kind
        if kind == "order":
            data = event.data
            orders = self.orders
            if not orders:
                self.orders = orders = []
            orders.append(  # type: ignore[attr-defined]
                (event.occurred_at, logged.position, data.order_id, money_e4(data.revenue), data.currency)
            )
        elif kind == "refund":
            data = event.data
            refunds = self.refunds
            if not refunds:
                self.refunds = refunds = []
            refunds.append(  # type: ignore[attr-defined]
                (event.occurred_at, logged.position, data.order_id, money_e4(data.amount), data.currency)
            )
        elif kind == "identity":
            if event.TYPE == "identity_linked":
                self.links = [*self.links, link_fact(logged)]  # a few per identity: copying is cheap
            elif event.TYPE == "customers_merged":
                self.merges = [*self.merges, merge_fact(logged)]
            else:
                return None
        elif kind == "consent" or kind == "erasure":  # an erasure: every purpose withdrawn, kept as "erasure"
            if kind == "erasure":
                stamp, purpose = (event.occurred_at, logged.position, False), "erasure"
            else:
                stamp, purpose = (event.occurred_at, logged.position, event.data.granted), event.data.purpose
            current = self.consents.get(purpose)
            if current is None or stamp[:2] > current[:2]:
                if self.consents is _NO_CONSENTS:
                    self.consents = {}
                self.consents[purpose] = stamp  # type: ignore[index]
        else:
            return None
        index[event_id] = None
        return kind

    # --- canonical form ----------------------------------------------------------

    def _canonical(self) -> tuple[Any, ...]:
        return (
            self.key,
            sorted(event_id for event_id, fact in self.index.items() if fact is None),
            sorted((fact, event_id) for event_id, fact in self.index.items() if fact is not None),
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
            f"IdentityJourney({self.key!r}, events={len(self.index)}, touches={len(self.touches)}, "
            f"orders={len(self.orders)})"
        )

    def to_bytes(self) -> bytes:
        """A canonical orjson document: equal journeys give equal bytes. Event ids are
        base64 of their 16 bytes: ``others`` for the events that are not touches,
        each touch carrying its own. (The processor encodes every changed journey once
        per batch, so this is written for speed: one pass over the index, ids encoded
        in C, everything in ``_canonical``'s order.)"""
        others: list[int] = []
        touches: list[tuple[TouchFact, int]] = []
        for event_id, fact in self.index.items():
            if fact is None:
                others.append(event_id)
            else:
                touches.append((fact, event_id))
        others.sort()
        touches.sort()
        return orjson.dumps(
            {
                "version": VERSION,
                "key": self.key,
                "others": _ids_text(others),
                "touches": [[_b64(event_id.to_bytes(16, "big"), newline=False).decode(), *fact]
                            for fact, event_id in touches],
                "orders": sorted(self.orders),
                "refunds": sorted(self.refunds),
                "links": sorted(self.links),
                "merges": sorted(self.merges),
                "consents": [[purpose, *stamp] for purpose, stamp in sorted(self.consents.items())],
            },
            option=orjson.OPT_UTC_Z,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> "IdentityJourney":
        try:
            doc = orjson.loads(raw)
            if doc.get("version") != VERSION:
                raise JourneyFormatError(f"journey format version {doc.get('version')!r}, expected {VERSION}")
            journey = cls(doc["key"])
            index = journey.index
            for event_id in _ids(doc["others"]):
                index[event_id] = None
            for text, at, pos, channel, campaign, kind, source in doc["touches"]:
                index[_id(text)] = (
                    _time(at), pos, _intern(channel), campaign if campaign is None else _intern(campaign),
                    _intern(kind), source if source is None else _intern(source),
                )
            journey.orders = [(_time(at), *rest) for at, *rest in doc["orders"]]  # type: ignore[misc]
            journey.refunds = [(_time(at), *rest) for at, *rest in doc["refunds"]]  # type: ignore[misc]
            journey.links = [(_time(at), *rest) for at, *rest in doc["links"]]  # type: ignore[misc]
            journey.merges = [(_time(at), *rest) for at, *rest in doc["merges"]]  # type: ignore[misc]
            journey.consents = {purpose: (_time(at), pos, granted) for purpose, at, pos, granted in doc["consents"]}
        except JourneyFormatError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise JourneyFormatError(f"not a journey document: {error}") from None
        return journey


def _ids_text(event_ids: Iterable[int]) -> str:
    return _b64(b"".join([event_id.to_bytes(16, "big") for event_id in event_ids]), newline=False).decode()


def _ids(text: str) -> list[int]:
    raw = _unb64(text, strict_mode=True)
    if len(raw) % 16:
        raise JourneyFormatError("event ids: not a whole number of 16-byte ids")
    return [int.from_bytes(raw[i : i + 16], "big") for i in range(0, len(raw), 16)]


def _id(text: str) -> int:
    raw = _unb64(text, strict_mode=True)
    if len(raw) != 16:
        raise JourneyFormatError("event id: not 16 bytes")
    return int.from_bytes(raw, "big")


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise JourneyFormatError(f"time without a UTC offset: {text!r}")
    return moment.astimezone(timezone.utc)


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
