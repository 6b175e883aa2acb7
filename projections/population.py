"""Every identity's journey and the identity graph: a mutable aggregate.

``evolve`` is the full fold (replay, the store feed, the audit): it routes each event to
its stream's journey and identity events to the graph. ``apply_journey`` is the live
view server's entry: it replaces one identity's journey (e.g. the latest one a stream
processor shipped through Kafka) and updates the graph with the identity facts it gained
or lost. Applying every identity's own fold this way gives exactly the state of the full
fold.

Both update the population in place and return it: a million-event fold cannot afford a
copy per event. The state is ``journeys`` and ``graph``; beside it, ``summaries`` (a
``GroupCache``) holds the group summaries and the results queries derive from them, and the
fold only marks there which identities changed. Groups are summarised lazily, on the
first query after a change, and only the groups that changed, so evolving stays cheap and
repeated queries are served from the cache. Not thread-safe: the shell serialises folds
and queries.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import MutableMapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from events.logged import LoggedEvent
from events.models import anonymous_stream, customer_stream
from projections.attribution import Path
from projections.group import GroupSummary
from projections.group_cache import GroupCache
from projections.identity import IdentityGraph
from projections.journey import DAY, MONEY_SCALE, IdentityJourney, LinkFact, MergeFact
from projections.journey import HANDLES as JOURNEY_HANDLES

VERSION = 1
HANDLES = JOURNEY_HANDLES
GROUP_BY = ("channel", "campaign", "source")
NO_LABEL = "(none)"  # the campaign (or source) label of touches that name none
SUMMARIES_KEPT = 10_000  # group summaries kept at hand when the journeys are not in memory


@runtime_checkable
class KnowsIdentityFacts(Protocol):
    """A journeys mapping that gives the links and merges of the journey it holds for a key
    without the whole journey (``application.journey_spill`` keeps them apart on disk)."""

    def identity_facts(self, key: str) -> tuple[Sequence[LinkFact], Sequence[MergeFact]]: ...


class Population:
    __slots__ = ("journeys", "graph", "summaries", "_facts_of")

    def __init__(self, journeys: MutableMapping[str, IdentityJourney] | None = None) -> None:
        """``journeys``: where the journeys are kept (a dict if not given). It is told of
        every change (``journeys[key] = journey`` also after a change in place), so it may
        keep them elsewhere than in memory (``application.journey_spill``); one with
        ``identity_facts(key)`` (the links and merges of the journey held) spares reading
        a whole journey to replace it."""
        self.journeys: MutableMapping[str, IdentityJourney] = {} if journeys is None else journeys
        self._facts_of = journeys.identity_facts if isinstance(journeys, KnowsIdentityFacts) else None
        self.graph = IdentityGraph()
        # journeys kept out of memory: their facts are not kept in every group's summary either
        self.summaries = GroupCache(self.journeys, self.graph, keep=None if journeys is None else SUMMARIES_KEPT)

    def __repr__(self) -> str:
        return f"Population(identities={len(self.journeys)})"

    def apply_journey(self, key: str, journey: IdentityJourney) -> None:
        """Replace the journey of ``key``; the population owns ``journey`` from now on."""
        if journey.key != key:
            raise ValueError(f"journey: belongs to {journey.key!r}, not {key!r}")
        facts_of = self._facts_of
        if facts_of is None:
            old = self.journeys.get(key)
            old_links, old_merges = (set(old.links), set(old.merges)) if old else (set(), set())
        else:
            old_links, old_merges = map(set, facts_of(key))
        new_links, new_merges = set(journey.links), set(journey.merges)
        for fact in old_links - new_links:
            self.graph.remove_link(fact)
        for fact in old_merges - new_merges:
            self.graph.remove_merge(fact)
        for fact in new_links - old_links:
            self.graph.add_link(fact)
        for fact in new_merges - old_merges:
            self.graph.add_merge(fact)
        self.journeys[key] = journey
        self.summaries.stale.add(key)

    # --- queries (through the summaries) ---------------------------------------------

    def groups(self) -> list[GroupSummary]:
        """Every group, ordered by root (so float sums over them are reproducible)."""
        return self.summaries.groups()

    def group(self, root: str) -> GroupSummary | None:
        """The summary of the group ``root`` heads: valid until the population next changes."""
        return self.summaries.group(root)

    def knows(self, key: str) -> bool:
        return key in self.journeys or self.graph.knows(key)

    def resolve(self, identity: str) -> str | None:
        """The root of the group ``identity`` belongs to: a stream name, else a customer
        id, else an anonymous id (in that order); None if nothing is known of it."""
        for candidate in (identity, customer_stream(identity), anonymous_stream(identity)):
            if self.knows(candidate):
                root = self.graph.root_of(candidate)
                return root if self.summaries.group(root) is not None else None
        return None


State = Population


def initial_state() -> Population:
    return Population()


def evolve(population: Population, logged: LoggedEvent) -> Population:
    """Fold one event into its stream's journey; identity facts also go to the graph."""
    key = logged.stream
    journeys = population.journeys
    journey = journeys.get(key)
    if journey is None:
        journey = journeys[key] = IdentityJourney(key)
    kind = journey.apply(logged)
    if kind is not None:
        journeys[key] = journey  # changed in place: tell the mapping
        population.summaries.stale.add(key)
        if kind == "identity":
            if logged.event.TYPE == "identity_linked":
                population.graph.add_link(journey.links[-1])
            else:
                population.graph.add_merge(journey.merges[-1])
    return population


def apply_journey(population: Population, key: str, journey: IdentityJourney) -> Population:
    population.apply_journey(key, journey)
    return population


def resolve(population: Population, identity: str) -> str | None:
    return population.resolve(identity)


def members(population: Population, root: str) -> tuple[str, ...]:
    """The identity streams of a group (what the shell reads for a timeline)."""
    return population.graph.members(root)


def group_summary(population: Population, root: str) -> GroupSummary | None:
    return population.group(root)


def label_index(group_by: str) -> int:
    """Where a touch tuple holds the label of ``group_by``."""
    if group_by == "channel":
        return 2
    if group_by == "campaign":
        return 3
    if group_by == "source":
        return 5
    raise ValueError(f"group_by: must be one of {', '.join(GROUP_BY)}, got {group_by!r}")


def touch_label(touch: tuple, index: int) -> str:
    label = touch[index]
    return NO_LABEL if label is None else label


def conversion_paths(
    population: Population,
    *,
    lookback_days: float | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    group_by: str = "channel",
    include_non_converting: bool = True,
) -> list[Path]:
    """The attribution models' input, one path per group, in root order.

    Converting: the group's first order in ``[start, end)``, its touches strictly
    before it (within ``lookback_days`` before it, inclusive, if given), ages
    measured to the order, value = that order's revenue. Non-converting: every
    prospect whose LAST touch is in ``[start, end)``, its touches within the
    lookback before that last touch, ages measured to it, value 0.
    """
    index = label_index(group_by)
    window = None if lookback_days is None else timedelta(days=lookback_days)
    key = ("paths", lookback_days, start, end, group_by, include_non_converting)
    summaries = population.summaries
    return summaries.cached(
        key, lambda: _paths(summaries, summaries.groups(), index, start, end, window, include_non_converting)
    )


def _paths(
    summaries: GroupCache,
    groups: list[GroupSummary],
    index: int,
    start: datetime | None,
    end: datetime | None,
    window: timedelta | None,
    include_non_converting: bool,
) -> list[Path]:
    paths = []
    for group in groups:
        touches = group.touches
        if group.orders:
            at = group.orders[0][0]
        elif touches and include_non_converting:
            at = touches[-1][0]
        else:
            continue
        if (start is not None and at < start) or (end is not None and at >= end):
            continue
        if window is not None:
            paths.append(group_path(group, index, window))
            continue
        # Without a lookback a group's path depends on the group alone: it is kept
        # with the group and rebuilt only when the group changes.
        cached = summaries.results_of(group.root)
        path = cached.get(index)
        if path is None:
            path = cached[index] = group_path(group, index, None)
        paths.append(path)
    return paths


def group_path(group: GroupSummary, index: int, window: timedelta | None) -> Path:
    """The path of a group with an order (its conversion path) or else a touch (its
    prospect path), labelled by the touch field at ``index`` (``label_index``)."""
    touches = group.touches
    converted, cut, at, value = path_end(group)
    first = 0 if window is None else bisect_left(touches, (at - window,), 0, cut)
    if index == 2:  # every touch names its channel
        labelled = [(touch[2], (at - touch[0]) / DAY) for touch in touches[first:cut]]
    else:
        labelled = [(touch[index] or NO_LABEL, (at - touch[0]) / DAY) for touch in touches[first:cut]]
    return Path(tuple(labelled), converted, value)


def path_end(group: GroupSummary) -> tuple[bool, int, datetime, float]:
    """Where a group's path ends (it has an order or a touch): ``(converted, cut, at,
    value)``: its path is ``touches[:cut]``, ages are measured to ``at`` (the first
    order's time, else the last touch's) and ``value`` is that order's revenue (else 0)."""
    if group.orders:
        order = group.orders[0]
        return True, group.conversion_index, order[0], order[3] / MONEY_SCALE
    touches = group.touches
    return False, len(touches), touches[-1][0], 0.0
