"""The default views, maintained incrementally from per-group contributions.

``MaintainedViews`` holds one aggregate per maintained view; the population's group
cache (``projections.group_cache``) hands it every group that changed, and the live
views (``application.live_views``) render the default documents from it instead of
walking every group. See ``aggregates.base`` for the pattern and its exactness. The
aggregates keep what they hold of a group at its slot, which ``MaintainedViews`` gives
(``GroupSlots``: one dict by root for all of them); what a group contributed to the
aggregates that subtract it later is held by ``MaintainedViews`` in one row a slot
(``KeptContributions``: in memory by default, or in a file the shell gives).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

from projections.aggregates.base import (
    ContributionAggregate, GroupSlots, HeldContributions, KeptContributions, MaintainedAggregate,
)
from projections.group import GroupSummary


class MaintainedViews:
    """The aggregates of one population, updated group by group."""

    __slots__ = ("_aggregates", "_kept_in", "_holding", "_by_view", "slots", "kept")

    def __init__(self, aggregates: Sequence[MaintainedAggregate], kept: KeptContributions | None = None):
        """``kept``: where the contributions are held (``HeldContributions``, in memory, if not given),
        except those of aggregates whose totals hold every contribution already
        (``ContributionAggregate.totals_hold_them``): those stay in memory, where a file
        would only hold a second copy of them."""
        self._aggregates = tuple(aggregates)
        keeping = [aggregate for aggregate in self._aggregates if isinstance(aggregate, ContributionAggregate)]
        in_memory = tuple(aggregate for aggregate in keeping if aggregate.totals_hold_them)
        in_rows = tuple(aggregate for aggregate in keeping if not aggregate.totals_hold_them)
        self.kept = HeldContributions(len(in_rows)) if kept is None else kept
        # each store with the aggregates whose contributions it keeps, by their place in its rows
        self._kept_in = tuple(
            (store, held) for store, held in ((HeldContributions(len(in_memory)), in_memory), (self.kept, in_rows)) if held
        )
        self._holding = tuple(aggregate for aggregate in self._aggregates if not isinstance(aggregate, ContributionAggregate))
        self.slots = GroupSlots()
        self._by_view: dict[str, list[MaintainedAggregate]] = {}
        for aggregate in self._aggregates:
            self._by_view.setdefault(aggregate.view, []).append(aggregate)

    @classmethod
    def default(cls, kept: KeptContributions | None = None) -> "MaintainedViews":
        """One of every registered aggregate (``aggregates.registered``)."""
        from projections.aggregates.registered import AGGREGATE_FACTORIES  # its modules import this package

        return cls([factory() for factory in AGGREGATE_FACTORIES], kept)

    def update(self, root: str, group: GroupSummary | None) -> None:
        """The group ``root`` heads is now ``group`` (None: it no longer exists)."""
        slots = self.slots
        if group is None:
            slot = slots.get(root)
            if slot is None:
                return
        else:
            slot = slots.slot(root)
        self._keep(slot, group)
        for aggregate in self._holding:
            aggregate.update(slot, group)
        if group is None:
            slots.release(root)

    def _keep(self, slot: int, group: GroupSummary | None) -> None:
        for store, aggregates in self._kept_in:
            plain = store.plain
            old = store.get(slot)
            if old is None:
                old = repeat(None)
            new, changed, held = [], False, False
            for aggregate, was in zip(aggregates, old):
                item = aggregate.from_plain(was) if plain and was is not None else was
                kept = aggregate.keep(slot, item, group)
                if kept is item:
                    new.append(was)  # as stored: plain, in a store that wants it so
                else:
                    changed = True
                    new.append(aggregate.to_plain(kept) if plain and kept is not None else kept)
                held = held or kept is not None
            if changed:
                store.put(slot, tuple(new) if held else None)

    def contributions(self, aggregate: MaintainedAggregate) -> list[Any]:
        """What ``aggregate`` holds of each slot, by slot (None: nothing): O(slots), for checks."""
        store, place = next((store, held.index(aggregate)) for store, held in self._kept_in if aggregate in held)
        rows = (store.get(slot) for slot in range(self.slots.given))
        items = (None if row is None or row[place] is None else row[place] for row in rows)
        return [None if item is None else aggregate.given_back(slot, aggregate.from_plain(item) if store.plain else item)
                for slot, item in enumerate(items)]

    def find(self, view: str, params: Mapping[str, Any]) -> MaintainedAggregate | None:
        """The aggregate that renders ``view`` with ``params``, if one does."""
        for aggregate in self._by_view.get(view, ()):
            if aggregate.answers(params):
                return aggregate
        return None

    def __len__(self) -> int:
        return len(self._aggregates)

