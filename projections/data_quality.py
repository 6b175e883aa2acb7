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
stable order. Rows name people, so a row naming anyone whose analytics consent is
withdrawn (``projections.consent``) is left out: a group's own findings, or a conflict or
cycle one of whose identities belongs to such a group. ``count`` and the amounts still
count them. A query over the population.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from projections import parameters
from projections.consent import listed
from projections.figures import iso, money
from projections.group import GroupSummary
from projections.identity import Conflict, IdentityGraph
from projections.journey import OrderFact, RefundFact
from projections.population import Population

VERSION = 2  # 2: rows naming people whose analytics consent is withdrawn are left out
# the sections whose rows are a group's own findings
GROUP_SECTIONS = ("refunds_for_unknown_orders", "over_refunded_orders", "duplicate_order_ids",
                  "orders_without_identity_link")


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

    def rows_per_section(self) -> tuple[tuple[str, int], ...]:
        """How many rows the group has in each of ``GROUP_SECTIONS``."""
        sections = (self.unknown_refunds, self.over_refunded, self.duplicate_orders)
        counts = [len(section) for section in sections] + [int(self.anonymous_orders is not None)]
        return tuple(zip(GROUP_SECTIONS, counts))


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
    unknown_refunds_e4 = anonymous_order_count = 0
    withdrawn: Counter[str] = Counter()  # rows not listed, per section
    currencies: Counter[str] = Counter()
    without_touch = 0
    for group in population.groups():
        found = findings(group)
        if found is None:
            continue
        for currency, orders in found.currencies:
            currencies[currency] += orders
        without_touch += found.without_touch
        unknown_refunds_e4 += sum(refund[3] for refund in found.unknown_refunds)
        anonymous_order_count += 0 if found.anonymous_orders is None else found.anonymous_orders[0]
        if found.has_rows and not listed(group):
            withdrawn.update(dict(found.rows_per_section()))
        elif found.has_rows:
            root = group.root
            unknown_refunds.extend((root, refund) for refund in found.unknown_refunds)
            over_refunded.extend((root, over) for over in found.over_refunded)
            duplicates.extend((root, order) for order in found.duplicate_orders)
            if found.anonymous_orders is not None:
                anonymous_orders.append((root, *found.anonymous_orders))
    return data_quality_document(
        population.graph,
        limit,
        identity_listed(population),
        unknown_refunds=unknown_refunds,
        unknown_refunds_e4=unknown_refunds_e4,
        over_refunded=over_refunded,
        duplicate_orders=duplicates,
        anonymous_orders=anonymous_orders,
        anonymous_order_count=anonymous_order_count,
        withdrawn=withdrawn,
        without_touch=without_touch,
        currencies=currencies,
    )


def identity_listed(population: Population) -> Callable[[str], bool]:
    """Whether rows may name the identity stream given: its group may be listed."""

    def named(identity: str) -> bool:
        group = population.group(population.graph.root_of(identity))
        return group is None or listed(group)

    return named


def data_quality_document(
    graph: IdentityGraph,
    limit: int,
    named: Callable[[str], bool],
    *,
    unknown_refunds: Sequence[tuple[str, RefundFact]],
    unknown_refunds_e4: int,
    over_refunded: Sequence[tuple[str, tuple[str, int, int]]],
    duplicate_orders: Sequence[tuple[str, OrderFact]],
    anonymous_orders: Sequence[tuple[str, int, int]],
    anonymous_order_count: int,
    withdrawn: Mapping[str, int],
    without_touch: int,
    currencies: Mapping[str, int],
) -> dict:
    """The document from the graph's conflicts and the groups' findings, each section's
    in the order of its rows: ``(root, fact)`` in root order, then the group's order (also
    rendered by the maintained view). The findings' rows are those that may be listed,
    ``withdrawn`` counts the others per section; conflicts and cycles are listed where
    ``named`` allows every identity they name. Only the first ``limit`` rows of a section are read."""
    link_conflicts, merge_conflicts = graph.link_conflicts(), graph.merge_conflicts()
    cycles = graph.merge_cycles()
    return {
        "limit": limit,
        "identity_conflicts": _named_section([_conflict(c, "anonymous", "customer") for c in link_conflicts
                                              if _names_listed(named, c)], len(link_conflicts), limit),
        "merge_conflicts": _named_section([_conflict(c, "duplicate", "survivor") for c in merge_conflicts
                                           if _names_listed(named, c)], len(merge_conflicts), limit),
        "merge_cycles": _named_section(
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
                if all(map(named, cycle.members))
            ],
            len(cycles),
            limit,
        ),
        "refunds_for_unknown_orders": {
            "count": len(unknown_refunds) + withdrawn.get("refunds_for_unknown_orders", 0),
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
            "count": len(over_refunded) + withdrawn.get("over_refunded_orders", 0),
            "rows": [
                {"identity": root, "order_id": order_id, "revenue": money(revenue), "refunds": money(refunds)}
                for root, (order_id, revenue, refunds) in over_refunded[:limit]
            ],
        },
        "duplicate_order_ids": {
            "count": len(duplicate_orders) + withdrawn.get("duplicate_order_ids", 0),
            "rows": [
                {"identity": root, "order_id": order[2], "occurred_at": iso(order[0]), "position": order[1]}
                for root, order in duplicate_orders[:limit]
            ],
        },
        "orders_without_identity_link": {
            "count": len(anonymous_orders) + withdrawn.get("orders_without_identity_link", 0),
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


def _named_section(rows: list[dict], count: int, limit: int) -> dict:
    return {"count": count, "rows": rows[:limit]}


def _names_listed(named: Callable[[str], bool], conflict: Conflict) -> bool:
    return named(conflict.node) and named(conflict.winner[3]) and all(named(loser[3]) for loser in conflict.losers)


def _conflict(conflict: Conflict, node_key: str, target_key: str) -> dict:
    def claim(fact: tuple[int, int, str, str]) -> dict:
        return {target_key: fact[3], "occurred_at": iso(fact[0]), "position": fact[1]}

    return {node_key: conflict.node, "winner": claim(conflict.winner), "losers": [claim(f) for f in conflict.losers]}
