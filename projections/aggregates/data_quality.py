"""Data quality, maintained: every group's findings, the rows of each section kept sorted.

Each group with an order or a refund adds its ``data_quality.findings``: the few that
show up in a section (unknown refunds, over-refunded orders, duplicate order ids, orders
of a group with no customer id) add their rows, keyed ``(root, fact)`` and kept sorted,
which is the definition's row order (groups in root order, then the group's own order);
those of a group whose analytics consent is withdrawn (``projections.consent``) are only
counted, per section. Every one adds its orders per currency and whether it bought before
any touch. Groups with no rows are alike, so their contributions are shared (one copy per
distinct value).

Rendering reads the first ``limit`` rows of each section and the counts, through the
definition's own ``data_quality_document``: O(limit). The identity conflicts and merge
cycles are the identity graph's, read from ``population.graph`` as the definition does
(its conflicts walk the linked anonymous ids: ``IdentityGraph.link_conflicts``), each
identity they name looked up in the population's groups (``data_quality.identity_listed``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from projections import parameters
from projections.aggregates.base import ContributionAggregate, SortedValues
from projections.consent import listed
from projections.data_quality import Findings, data_quality_document, findings, identity_listed
from projections.group import GroupSummary
from projections.parameters import ViewParameterError

# (root of a group with rows, else None; its findings; whether its rows are listed)
Found = tuple["str | None", Findings, bool]


class DataQuality(ContributionAggregate[Found]):
    """``data_quality`` with any ``limit``."""

    view = "data_quality"

    def __init__(self) -> None:
        super().__init__()
        self._unknown_refunds = SortedValues()  # (root, refund)
        self._unknown_refunds_e4 = 0
        self._over_refunded = SortedValues()  # (root, (order_id, revenue_e4, refunds_e4))
        self._duplicate_orders = SortedValues()  # (root, order)
        self._anonymous_orders = SortedValues()  # (root, orders, net revenue e4)
        self._anonymous_order_count = 0
        self._withdrawn: Counter[str] = Counter()  # rows of groups not listed, per section
        self._currencies: Counter[str] = Counter()  # no zero counts
        self._without_touch = 0
        self._shared: dict[Found, Found] = {}  # one copy of each contribution without rows

    def to_plain(self, held: Found) -> tuple:
        root, found, shown = held
        return (root, tuple(found), shown)

    def from_plain(self, plain: tuple) -> Found:
        root, found, shown = plain
        return (root, Findings(*found), shown)

    def contribution(self, group: GroupSummary) -> Found | None:
        found = findings(group)
        if found is None:
            return None
        if found.has_rows:
            return (group.root, found, listed(group))
        contribution = (None, found, True)
        return self._shared.setdefault(contribution, contribution)

    def add(self, contribution: Found) -> None:
        self._apply(contribution, 1)

    def subtract(self, contribution: Found) -> None:
        self._apply(contribution, -1)

    def _apply(self, contribution: Found, sign: int) -> None:
        root, found, shown = contribution
        currencies = self._currencies
        for currency, orders in found.currencies:
            currencies[currency] += sign * orders
            if not currencies[currency]:
                del currencies[currency]
        self._without_touch += sign * found.without_touch
        if root is None:
            return
        self._unknown_refunds_e4 += sign * sum(refund[3] for refund in found.unknown_refunds)
        if found.anonymous_orders is not None:
            self._anonymous_order_count += sign * found.anonymous_orders[0]
        if not shown:
            withdrawn = self._withdrawn
            for section, rows in found.rows_per_section():
                withdrawn[section] += sign * rows
                if not withdrawn[section]:
                    del withdrawn[section]
            return
        put = SortedValues.add if sign > 0 else SortedValues.remove
        for refund in found.unknown_refunds:
            put(self._unknown_refunds, (root, refund))
        for over in found.over_refunded:
            put(self._over_refunded, (root, over))
        for order in found.duplicate_orders:
            put(self._duplicate_orders, (root, order))
        if found.anonymous_orders is not None:
            put(self._anonymous_orders, (root, *found.anonymous_orders))

    def answers(self, params: Mapping[str, Any]) -> bool:
        if not set(params) <= {"limit"}:
            return False
        try:
            parameters.positive_int("limit", params.get("limit", 100))
        except ViewParameterError:
            return False  # the definition says what is wrong
        return True

    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        population.summaries.refresh()  # the look-ups of the conflicts' groups must not change the rows
        return data_quality_document(
            population.graph,
            parameters.positive_int("limit", params.get("limit", 100)),
            identity_listed(population),
            unknown_refunds=self._unknown_refunds.values,
            unknown_refunds_e4=self._unknown_refunds_e4,
            over_refunded=self._over_refunded.values,
            duplicate_orders=self._duplicate_orders.values,
            anonymous_orders=self._anonymous_orders.values,
            anonymous_order_count=self._anonymous_order_count,
            withdrawn=self._withdrawn,
            without_touch=self._without_touch,
            currencies=self._currencies,
        )
