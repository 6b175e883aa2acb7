"""Given / when / then specifications for the projections.

``given(*events).when(*events).then(view, expected, **params)`` folds the
events, in the order written, through the population (positions 10, 20, 30...:
ordered, not dense, like the store's), computes ``view(population, **params)``
and checks that the
document contains ``expected``: dicts match on the keys given, lists element by
element, anything else by equality. ``then`` returns the whole document.

Events are built with small factories and validated by the real registry:
``touch("instagram", at="2024-01-01", anon="ig:@anna")``, ``order("o-1", "120.00",
at=..., customer="42")``, ``refund``, ``link``, ``merge``, ``consent``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from events.logged import LoggedEvent
from events.models import Event
from events.registry import REGISTRY
from projections.population import Population, evolve, initial_state

RECORDED_FROM = datetime(2030, 1, 1, tzinfo=timezone.utc)
NOW = "2025-01-01T00:00:00Z"
_ids = itertools.count(1)


def fold(entries: Iterable[LoggedEvent], population: Population | None = None) -> Population:
    """``evolve`` over ``entries`` in order, into ``population`` or a fresh one: the
    projection alone, without a shell."""
    return functools.reduce(evolve, entries, initial_state() if population is None else population)


def at_time(text: str) -> str:
    """ISO text as UTC: "2024-01-01" or "2024-01-01T10:30" are accepted."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat()


def event(type: str, *, at: str, customer: str | None = None, anon: str | None = None, **fields: Any) -> Event:
    body = {"event_id": str(UUID(int=next(_ids))), "type": type, "occurred_at": at_time(at)}
    if customer is not None:
        body["customer_id"] = customer
    if anon is not None:
        body["anonymous_id"] = anon
    body.update({key: value for key, value in fields.items() if value is not None})
    return REGISTRY.validate(body)


def touch(channel: str, *, at: str, anon: str | None = None, customer: str | None = None,
          campaign: str | None = None, type: str = "page_viewed", source: str | None = None) -> Event:
    return event(type, at=at, anon=anon, customer=customer, channel=channel, campaign=campaign, source=source)


def order(order_id: str, revenue: str, *, at: str, customer: str | None = None, anon: str | None = None,
          currency: str = "EUR") -> Event:
    data = {"order_id": order_id, "revenue": revenue, "currency": currency}
    return event("order_placed", at=at, customer=customer, anon=anon, data=data)


def refund(order_id: str, amount: str, *, at: str, customer: str | None = None, anon: str | None = None) -> Event:
    return event("order_refunded", at=at, customer=customer, anon=anon, data={"order_id": order_id, "amount": amount})


def link(anon: str, customer: str, *, at: str) -> Event:
    return event("identity_linked", at=at, customer=customer, anon=anon)


def merge(duplicate: str, into: str, *, at: str) -> Event:
    return event("customers_merged", at=at, customer=into, data={"duplicate_customer_id": duplicate})


def consent(purpose: str, granted: bool, *, at: str, customer: str | None = None, anon: str | None = None) -> Event:
    return event("consent_changed", at=at, customer=customer, anon=anon, data={"purpose": purpose, "granted": granted})


def logged(events: Sequence[Event], first_position: int = 10, step: int = 10) -> list[LoggedEvent]:
    """LoggedEvents in the order given: positions ``first_position``, +``step``..."""
    return [
        LoggedEvent(first_position + step * n, RECORDED_FROM + timedelta(seconds=n), e.stream, e)
        for n, e in enumerate(events)
    ]


class Spec:
    def __init__(self, events: Iterable[Event]):
        self.events = list(events)

    def when(self, *events: Event) -> "Spec":
        return Spec([*self.events, *events])

    def logged(self) -> list[LoggedEvent]:
        return logged(self.events)

    def population(self) -> Population:
        return fold(self.logged())

    def then(self, view: Callable[..., Any], expected: Any, **params: Any) -> Any:
        document = view(self.population(), **params)
        assert_matches(expected, document)
        return document


def given(*events: Event) -> Spec:
    return Spec(events)


def assert_matches(expected: Any, actual: Any, where: str = "document") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a dict, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: no key {key!r} in {actual!r}"
            assert_matches(value, actual[key], f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{where}: expected {len(expected)} items, got {actual!r}"
        for n, (want, got) in enumerate(zip(expected, actual)):
            assert_matches(want, got, f"{where}[{n}]")
    else:
        assert actual == expected, f"{where}: expected {expected!r}, got {actual!r}"


def rows_by(document: dict, key: str) -> dict[Any, dict]:
    """The document's rows keyed by one of their fields."""
    return {row[key]: row for row in document["rows"]}
