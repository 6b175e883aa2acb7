"""Data quality: what the log says that the views had to decide about.

* ``identity_conflicts``: anonymous ids linked to several customers; the
  earliest link won (by occurred_at, then position), the others did not merge.
* ``merge_conflicts``: customers merged into several survivors; earliest won.
* ``merge_cycles``: merges forming a cycle; the latest merge of it was ignored.
* ``refunds_for_unknown_orders``: refunds naming no order of their group (not
  subtracted from revenue until that order joins the group).
* ``over_refunded_orders``: refunds above the order's revenue (capped at it).
* ``duplicate_order_ids``: a second ``order_placed`` for an order id already
  placed in the group (only the earliest counts).
* ``orders_without_identity_link``: orders of groups with no customer id (an
  anonymous id never linked to a customer).
* ``customers_without_touch``: customers with no touch before their first
  order (their conversions are unattributed).
* ``currencies``: orders per currency; revenue figures add amounts across
  currencies as they are, so ``mixed_currencies`` warns when there are several.

Each section has the full ``count`` and at most ``limit`` example rows, in a
stable order. A query over the population.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from projections import parameters
from projections.figures import iso, money
from projections.group import GroupSummary
from projections.identity import Conflict, IdentityGraph
from projections.journey import OrderFact, RefundFact
from projections.population import Population

VERSION = 1


class Findings(NamedTuple):
    """What one group tells the data quality view: immutable, so a maintained view can
    keep it per group."""

    unknown_refunds: tuple[RefundFact, ...]
    over_refunded: tuple[tuple[str, int, int], ...]  # (order_id, revenue_e4, refunds_e4)
    duplicate_orders: tuple[OrderFact, ...]
    currencies: tuple[tuple[str, int], ...]  # (currency, orders), by currency
    anonymous_orders: tuple[int, int] | None  # (orders, net revenue e4) of a group with no customer id
    without_touch: bool  # a customer with no touch before the first order

    @property
    def has_rows(self) -> bool:
        """Whether the group shows up in a section's rows (most groups do not)."""
        return bool(self.unknown_refunds or self.over_refunded or self.duplicate_orders or self.anonymous_orders)


def findings(group: GroupSummary) -> Findings | None:
    """What ``group`` tells the view (None: nothing, a group with no order and no refund)."""
    orders = group.orders
    if not orders and not group.unmatched_refunds:
        return None
    anonymous = None
    if orders and not group.root.startswith("customer-"):
        anonymous = (len(orders), group.net_e4)
    return Findings(
        group.unmatched_refunds,
        group.over_refunded,
        group.duplicate_orders,
        _currencies(orders),
        anonymous,
        bool(orders) and not group.converted_after_touch,
    )


def _currencies(orders: Sequence[OrderFact]) -> tuple[tuple[str, int], ...]:
    if not orders:
        return ()
    currency = orders[0][4]
    for order in orders:
        if order[4] != currency:
            return tuple(sorted(Counter(order[4] for order in orders).items()))
    return ((currency, len(orders)),)  # one currency: nearly always


def data_quality_view(population: Population, *, limit: object = 100) -> dict:
    limit = parameters.positive_int("limit", limit)
    unknown_refunds, over_refunded, duplicates, anonymous_orders = [], [], [], []
    currencies: Counter[str] = Counter()
    without_touch = 0
    for group in population.groups():
        found = findings(group)
        if found is None:
            continue
        for currency, orders in found.currencies:
            currencies[currency] += orders
        without_touch += found.without_touch
        if found.has_rows:
            root = group.root
            unknown_refunds.extend((root, refund) for refund in found.unknown_refunds)
            over_refunded.extend((root, over) for over in found.over_refunded)
            duplicates.extend((root, order) for order in found.duplicate_orders)
            if found.anonymous_orders is not None:
                anonymous_orders.append((root, *found.anonymous_orders))
    return data_quality_document(
        population.graph,
        limit,
        unknown_refunds=unknown_refunds,
        unknown_refunds_e4=sum(refund[3] for _, refund in unknown_refunds),
        over_refunded=over_refunded,
        duplicate_orders=duplicates,
        anonymous_orders=anonymous_orders,
        anonymous_order_count=sum(row[1] for row in anonymous_orders),
        without_touch=without_touch,
        currencies=currencies,
    )


def data_quality_document(
    graph: IdentityGraph,
    limit: int,
    *,
    unknown_refunds: Sequence[tuple[str, RefundFact]],
    unknown_refunds_e4: int,
    over_refunded: Sequence[tuple[str, tuple[str, int, int]]],
    duplicate_orders: Sequence[tuple[str, OrderFact]],
    anonymous_orders: Sequence[tuple[str, int, int]],
    anonymous_order_count: int,
    without_touch: int,
    currencies: Mapping[str, int],
) -> dict:
    """The document from the graph's conflicts and the groups' findings, each section's
    in the order of its rows: ``(root, fact)`` in root order, then the group's order (also
    rendered by the maintained view). Only the first ``limit`` rows of a section are read."""
    cycles = graph.merge_cycles()
    return {
        "limit": limit,
        "identity_conflicts": _section([_conflict(c, "anonymous", "customer") for c in graph.link_conflicts()], limit),
        "merge_conflicts": _section([_conflict(c, "duplicate", "survivor") for c in graph.merge_conflicts()], limit),
        "merge_cycles": _section(
            [
                {
                    "customers": list(cycle.members),
                    "ignored_merge": {
                        "duplicate": cycle.ignored[2],
                        "survivor": cycle.ignored[3],
                        "occurred_at": iso(cycle.ignored[0]),
                        "position": cycle.ignored[1],
                    },
                }
                for cycle in cycles
            ],
            limit,
        ),
        "refunds_for_unknown_orders": {
            "count": len(unknown_refunds),
            "amount": money(unknown_refunds_e4),
            "rows": [
                {
                    "identity": root,
                    "order_id": refund[2],
                    "amount": money(refund[3]),
                    "occurred_at": iso(refund[0]),
                    "position": refund[1],
                }
                for root, refund in unknown_refunds[:limit]
            ],
        },
        "over_refunded_orders": {
            "count": len(over_refunded),
            "rows": [
                {"identity": root, "order_id": order_id, "revenue": money(revenue), "refunds": money(refunds)}
                for root, (order_id, revenue, refunds) in over_refunded[:limit]
            ],
        },
        "duplicate_order_ids": {
            "count": len(duplicate_orders),
            "rows": [
                {"identity": root, "order_id": order[2], "occurred_at": iso(order[0]), "position": order[1]}
                for root, order in duplicate_orders[:limit]
            ],
        },
        "orders_without_identity_link": {
            "count": len(anonymous_orders),
            "orders": anonymous_order_count,
            "rows": [
                {"identity": root, "orders": orders, "revenue": money(net_e4)}
                for root, orders, net_e4 in anonymous_orders[:limit]
            ],
        },
        "customers_without_touch": {"count": without_touch},
        "currencies": dict(sorted(currencies.items())),
        "mixed_currencies": len(currencies) > 1,
    }


def _section(rows: list[dict], limit: int) -> dict:
    return {"count": len(rows), "rows": rows[:limit]}


def _conflict(conflict: Conflict, node_key: str, target_key: str) -> dict:
    def claim(fact: tuple[int, int, str, str]) -> dict:
        return {target_key: fact[3], "occurred_at": iso(fact[0]), "position": fact[1]}

    return {node_key: conflict.node, "winner": claim(conflict.winner), "losers": [claim(f) for f in conflict.losers]}
