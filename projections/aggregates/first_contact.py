"""First contact, maintained: integer tallies that every group with a touch adds to.

``FirstContact`` (``first_contact`` by channel, by campaign and by source, no
``from``/``to``): each group with a touch adds its first touch's channel, campaign and
source, whether it converted after that touch, and if so its net revenue; the aggregate
keeps ``(reached, converted, revenue_e4)`` per label for every labelling, so one aggregate
renders every ``group_by``'s document. A window (``from``/``to``) is left to the definition.

Rendered in O(labels log labels) by the definition's own ``first_contact_document``;
exact, since every figure is an integer sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from projections.aggregates.base import ContributionAggregate
from projections.first_contact import first_contact_document
from projections.group import GroupSummary
from projections.population import GROUP_BY, label_index, touch_label

# (channel, campaign label, source label, converted after the first touch, net revenue e4 if converted else 0)
Contact = tuple[str, str, str, bool, int]

_LABEL_INDEXES = tuple(label_index(group_by) for group_by in GROUP_BY)


class FirstContact(ContributionAggregate[Contact]):
    """``first_contact`` with either ``group_by`` and no window."""

    view = "first_contact"

    def __init__(self) -> None:
        super().__init__()
        # group_by -> label -> [reached, converted, revenue_e4]; labels reached by no group are removed
        self._tallies: dict[str, dict[str, list[int]]] = {group_by: {} for group_by in GROUP_BY}
        self._shared: dict[Contact, Contact] = {}  # one copy of each unconverted contribution: few distinct

    def contribution(self, group: GroupSummary) -> Contact | None:
        first = group.first_touch
        if first is None:
            return None
        channel, campaign, source = (touch_label(first, index) for index in _LABEL_INDEXES)
        if group.converted_after_touch:
            return (channel, campaign, source, True, group.net_e4)
        contribution = (channel, campaign, source, False, 0)
        return self._shared.setdefault(contribution, contribution)

    def add(self, contribution: Contact) -> None:
        converted, revenue_e4 = contribution[3], contribution[4]
        for group_by, label in zip(GROUP_BY, contribution):
            tallies = self._tallies[group_by]
            tally = tallies.get(label)
            if tally is None:
                tally = tallies[label] = [0, 0, 0]
            tally[0] += 1
            if converted:
                tally[1] += 1
                tally[2] += revenue_e4

    def subtract(self, contribution: Contact) -> None:
        converted, revenue_e4 = contribution[3], contribution[4]
        for group_by, label in zip(GROUP_BY, contribution):
            tallies = self._tallies[group_by]
            tally = tallies[label]
            tally[0] -= 1
            if converted:
                tally[1] -= 1
                tally[2] -= revenue_e4
            if not tally[0]:
                del tallies[label]

    def answers(self, params: Mapping[str, Any]) -> bool:
        return (
            set(params) <= {"group_by", "start", "end"}
            and params.get("group_by", "channel") in GROUP_BY
            and params.get("start") is None
            and params.get("end") is None
        )

    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        group_by = params.get("group_by", "channel")
        return first_contact_document(group_by, None, None, self._tallies[group_by])
