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

from projections import parameters
from projections.figures import iso, money
from projections.identity import Conflict
from projections.population import Population

VERSION = 1


def data_quality_view(population: Population, *, limit: object = 100) -> dict:
    limit = parameters.positive_int("limit", limit)
    groups = population.groups()
    graph = population.graph
    unknown_refunds, over_refunded, duplicates, currencies = [], [], [], Counter()
    anonymous_orders = []
    without_touch = 0
    for group in groups:
        for refund in group.unmatched_refunds:
            unknown_refunds.append((group.root, refund))
        for order_id, revenue, refunds in group.over_refunded:
            over_refunded.append(
                {"identity": group.root, "order_id": order_id, "revenue": money(revenue), "refunds": money(refunds)}
            )
        for order in group.duplicate_orders:
            duplicates.append(
                {"identity": group.root, "order_id": order[2], "occurred_at": iso(order[0]), "position": order[1]}
            )
        for order in group.orders:
            currencies[order[4]] += 1
        if group.orders:
            if not group.converted_after_touch:
                without_touch += 1
            if not group.root.startswith("customer-"):
                anonymous_orders.append(
                    {"identity": group.root, "orders": len(group.orders), "revenue": money(group.net_e4)}
                )
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
        "refunds_for_unknown_orders": _section(
            [
                {
                    "identity": root,
                    "order_id": refund[2],
                    "amount": money(refund[3]),
                    "occurred_at": iso(refund[0]),
                    "position": refund[1],
                }
                for root, refund in unknown_refunds
            ],
            limit,
            amount=money(sum(refund[3] for _, refund in unknown_refunds)),
        ),
        "over_refunded_orders": _section(over_refunded, limit),
        "duplicate_order_ids": _section(duplicates, limit),
        "orders_without_identity_link": _section(
            anonymous_orders, limit, orders=sum(row["orders"] for row in anonymous_orders)
        ),
        "customers_without_touch": {"count": without_touch},
        "currencies": dict(sorted(currencies.items())),
        "mixed_currencies": len(currencies) > 1,
    }


def _section(rows: list[dict], limit: int, **totals: object) -> dict:
    return {"count": len(rows), **totals, "rows": rows[:limit]}


def _conflict(conflict: Conflict, node_key: str, target_key: str) -> dict:
    def claim(fact: tuple[int, int, str, str]) -> dict:
        return {target_key: fact[3], "occurred_at": iso(fact[0]), "position": fact[1]}

    return {node_key: conflict.node, "winner": claim(conflict.winner), "losers": [claim(f) for f in conflict.losers]}
