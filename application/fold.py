"""The fold shell: the one way the log becomes a population.

Replay, the store feed and the live views fold the log alike. Each stored event is
decoded by the one decoder (``events.registry.EventRegistry.decode_logged``, reached
from a store's envelope, a raw row or a published record), evolved into the population
by ``projections.population.evolve`` (the pure fold), and ``LogFold`` keeps what the
pure fold does not: how far the log was folded (the highest position) and its data time
(the newest ``occurred_at`` folded: the "now" of the views, so a replay and the live
views of the same log agree), plus the oldest ``occurred_at`` a replay reports.

A redelivered event changes nothing: the journeys remember the events they applied,
and position and data time only move forward. Folding many events pauses the cyclic
garbage collector (``collector_paused``): the fold allocates no reference cycles, and
every collection would rescan the whole growing population.

``journey_extent`` is the same bookkeeping for a journey folded elsewhere (a stream
processor ships whole journeys): the highest position and newest time it reflects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from application.collector import collector_paused
from events.logged import LoggedEvent
from events.times import EPOCH
from projections import population as population_module
from projections.journey import IdentityJourney

_BEFORE_ALL = datetime.min.replace(tzinfo=EPOCH.tzinfo)
_AFTER_ALL = datetime.max.replace(tzinfo=EPOCH.tzinfo)


@dataclass(slots=True)
class LogFold:
    """A population folded from the log, and how far: not thread-safe (callers lock)."""

    population: Any = field(default_factory=population_module.initial_state)
    position: int | None = None  # the highest log position folded (or passed over, see ``fold``)
    data_time: datetime | None = None  # the newest occurred_at folded
    oldest: datetime | None = None  # the oldest occurred_at folded

    def fold(self, logged_events: Iterable[LoggedEvent], *, through_position: int | None = None) -> None:
        """Evolve the population by decoded events in log order. ``through_position``
        moves ``position`` past events the caller read but did not fold (undecodable
        ones, say) so that a feed does not read them again."""
        evolve = population_module.evolve
        population = self.population
        newest = self.data_time or _BEFORE_ALL
        oldest = self.oldest or _AFTER_ALL
        logged = None
        with collector_paused():
            for logged in logged_events:
                population = evolve(population, logged)
                occurred = logged.event.occurred_at
                if occurred > newest:
                    newest = occurred
                if occurred < oldest:
                    oldest = occurred
        self.population = population
        if logged is not None:
            self.data_time, self.oldest = newest, oldest
        last = through_position if logged is None else logged.position
        if through_position is not None and through_position > last:  # type: ignore[operator]
            last = through_position
        self.reach(last, None)

    def reach(self, position: int | None, occurred: datetime | None) -> None:
        """Move position and data time forward to what was folded elsewhere (never back)."""
        if position is not None and (self.position is None or position > self.position):
            self.position = position
        if occurred is not None and (self.data_time is None or occurred > self.data_time):
            self.data_time = occurred


def journey_extent(journey: IdentityJourney) -> tuple[int | None, datetime | None]:
    """The highest log position and the newest ``occurred_at`` a journey reflects (None,
    None for an empty one): every fact is ``(occurred_at, position, ...)``."""
    position = None
    latest = None
    for facts in (journey.touches, journey.orders, journey.refunds, journey.links, journey.merges):
        for fact in facts:
            if position is None or fact[1] > position:
                position = fact[1]
            if latest is None or fact[0] > latest:
                latest = fact[0]
    for at, pos, _granted in journey.consents.values():
        if position is None or pos > position:
            position = pos
        if latest is None or at > latest:
            latest = at
    return position, latest
