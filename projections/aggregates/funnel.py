"""The funnel, maintained: how many groups have each ``customer_value.funnel_flags`` value.

Each group adds its flags (a small int: one bit per funnel count it is in); rendering
sums the counts per bit over the few distinct flag values, through the definition's own
``funnel_document``. ``identities`` is the population's journey count, read as is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from projections.aggregates.base import ContributionAggregate
from projections.customer_value import funnel_document, funnel_flags
from projections.group import GroupSummary


class Funnel(ContributionAggregate[int]):
    """``funnel`` (it has no parameters)."""

    view = "funnel"

    def __init__(self) -> None:
        super().__init__()
        self._groups_by_flags: Counter[int] = Counter()  # every group has flags, 0 included

    def contribution(self, group: GroupSummary) -> int:
        return funnel_flags(group)

    def add(self, contribution: int) -> None:
        self._groups_by_flags[contribution] += 1

    def subtract(self, contribution: int) -> None:
        groups_by_flags = self._groups_by_flags
        groups_by_flags[contribution] -= 1
        if not groups_by_flags[contribution]:
            del groups_by_flags[contribution]

    def answers(self, params: Mapping[str, Any]) -> bool:
        return not params

    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        return funnel_document(self._groups_by_flags, len(population.journeys))
