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

    __slots__ = ("_aggregates", "_keeping", "_holding", "_by_view", "slots", "kept")

    def __init__(self, aggregates: Sequence[MaintainedAggregate], kept: KeptContributions | None = None):
        """``kept``: where the contributions are held (``HeldContributions``, in memory, if not given)."""
        self._aggregates = tuple(aggregates)
        # the aggregates whose contributions are kept here, by their place in a kept row; the others hold theirs
        self._keeping = tuple(aggregate for aggregate in self._aggregates if isinstance(aggregate, ContributionAggregate))
        self._holding = tuple(aggregate for aggregate in self._aggregates if not isinstance(aggregate, ContributionAggregate))
        self.kept = HeldContributions(len(self._keeping)) if kept is None else kept
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
        if not self._keeping:
            return
        old = self.kept.get(slot)
        held = old or repeat(None)
        new = tuple(aggregate.keep(slot, item, group) for aggregate, item in zip(self._keeping, held))
        if old is None:
            if new.count(None) < len(new):
                self.kept.put(slot, new)
        elif any(item is not was for item, was in zip(new, old)):
            self.kept.put(slot, None if new.count(None) == len(new) else new)

    def contributions(self, aggregate: MaintainedAggregate) -> list[Any]:
        """What ``aggregate`` holds of each slot, by slot (None: nothing): O(slots), for checks."""
        place = self._keeping.index(aggregate)
        return [None if (row := self.kept.get(slot)) is None else aggregate.given_back(slot, row[place])
                for slot in range(self.slots.given)]

    def find(self, view: str, params: Mapping[str, Any]) -> MaintainedAggregate | None:
        """The aggregate that renders ``view`` with ``params``, if one does."""
        for aggregate in self._by_view.get(view, ()):
            if aggregate.answers(params):
                return aggregate
        return None

    def __len__(self) -> int:
        return len(self._aggregates)

