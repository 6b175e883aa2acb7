"""The default views, maintained incrementally from per-group contributions.

``MaintainedViews`` holds one aggregate per maintained view; the population's group
cache (``projections.group_cache``) hands it every group that changed, and the live
views (``application.live_views``) render the default documents from it instead of
walking every group. See ``aggregates.base`` for the pattern and its exactness. The
aggregates keep what they hold of a group at its slot, which ``MaintainedViews`` gives
(``GroupSlots``: one dict by root for all of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from projections.aggregates.base import GroupSlots, MaintainedAggregate
from projections.group import GroupSummary


class MaintainedViews:
    """The aggregates of one population, updated group by group."""

    __slots__ = ("_aggregates", "_by_view", "slots")

    def __init__(self, aggregates: Sequence[MaintainedAggregate]):
        self._aggregates = tuple(aggregates)
        self.slots = GroupSlots()
        self._by_view: dict[str, list[MaintainedAggregate]] = {}
        for aggregate in self._aggregates:
            self._by_view.setdefault(aggregate.view, []).append(aggregate)

    @classmethod
    def default(cls) -> "MaintainedViews":
        """One of every registered aggregate (``aggregates.registered``)."""
        from projections.aggregates.registered import AGGREGATE_FACTORIES  # its modules import this package

        return cls([factory() for factory in AGGREGATE_FACTORIES])

    def update(self, root: str, group: GroupSummary | None) -> None:
        """The group ``root`` heads is now ``group`` (None: it no longer exists)."""
        slots = self.slots
        if group is not None:
            slot = slots.slot(root)
            for aggregate in self._aggregates:
                aggregate.update(slot, group)
            return
        slot = slots.get(root)
        if slot is not None:
            for aggregate in self._aggregates:
                aggregate.update(slot, None)
            slots.release(root)

    def find(self, view: str, params: Mapping[str, Any]) -> MaintainedAggregate | None:
        """The aggregate that renders ``view`` with ``params``, if one does."""
        for aggregate in self._by_view.get(view, ()):
            if aggregate.answers(params):
                return aggregate
        return None

    def __len__(self) -> int:
        return len(self._aggregates)

