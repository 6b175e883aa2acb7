"""One identity group (a person across all their linked identities), summarised.

``summarize`` merges the journeys of a group's member streams into the facts
every view reads. Definitions (the product's contract):

* touches are ordered by ``(occurred_at, position)``;
* an order id counts once per group: the earliest ``order_placed`` for it is
  the order, later ones with the same id are reported as duplicates;
* the conversion is the first order; its path is the touches strictly before
  it in that same order (so a touch at the very same microsecond as the order
  counts only if the log holds it first);
* a refund reduces the order it names, never below zero (an excess is
  reported); a refund naming no order of the group reduces nothing and is
  reported, until that order joins the group;
* net revenue = orders minus those refunds.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from projections.journey import ConsentStamp, IdentityJourney, OrderFact, RefundFact, TouchFact


_NO_CONSENTS: Mapping[str, ConsentStamp] = MappingProxyType({})


class GroupSummary:
    """The merged, sorted facts of one group: derived from its members' journeys, never
    folded into (``group_cache`` keeps it until the group changes)."""

    __slots__ = (
        "root",
        "members",
        "touches",
        "orders",
        "duplicate_orders",
        "refunds",
        "unmatched_refunds",
        "over_refunded",
        "gross_e4",
        "refunded_e4",
        "conversion_index",
        "consents",
    )

    def __init__(self, root: str, members: tuple[str, ...]):
        self.root = root
        self.members = members
        self.touches: Sequence[TouchFact] = ()
        self.orders: Sequence[OrderFact] = ()
        self.duplicate_orders: tuple[OrderFact, ...] = ()
        self.refunds: Sequence[RefundFact] = ()
        self.unmatched_refunds: tuple[RefundFact, ...] = ()
        self.over_refunded: tuple[tuple[str, int, int], ...] = ()  # (order_id, revenue_e4, refunds_e4)
        self.gross_e4 = 0
        self.refunded_e4 = 0
        self.conversion_index: int | None = None  # touches before the first order; None: no order
        self.consents: Mapping[str, ConsentStamp] = _NO_CONSENTS

    @property
    def first_touch(self) -> TouchFact | None:
        return self.touches[0] if self.touches else None

    @property
    def last_touch(self) -> TouchFact | None:
        return self.touches[-1] if self.touches else None

    @property
    def first_order(self) -> OrderFact | None:
        return self.orders[0] if self.orders else None

    @property
    def last_order(self) -> OrderFact | None:
        return self.orders[-1] if self.orders else None

    @property
    def net_e4(self) -> int:
        return self.gross_e4 - self.refunded_e4

    @property
    def is_prospect(self) -> bool:
        """At least one touch and no order yet."""
        return not self.orders and bool(self.touches)

    @property
    def converted_after_touch(self) -> bool:
        """The first order came after the first contact."""
        return bool(self.conversion_index)


def summarize(
    root: str, members: tuple[str, ...], journeys: Mapping[str, IdentityJourney]
) -> GroupSummary:
    group = GroupSummary(root, members)
    parts = [journeys[key] for key in members if key in journeys]
    if len(parts) == 1:  # most groups: one identity, its lists sorted in place
        part = parts[0]
        touches = part.touches
        touches.sort()
        group.touches = touches
        orders = _sorted(part.orders)
        group.refunds = _sorted(part.refunds)
        group.consents = part.consents
    else:
        group.touches = _merged([part.touches for part in parts])
        orders = _merged([part.orders for part in parts])
        group.refunds = _merged([part.refunds for part in parts])
        consents: dict[str, ConsentStamp] = {}
        for part in parts:
            for purpose, stamp in part.consents.items():
                current = consents.get(purpose)
                if current is None or stamp[:2] > current[:2]:
                    consents[purpose] = stamp
        group.consents = consents
    if orders:
        _count_orders(group, orders)
    if group.refunds:
        _apply_refunds(group)
    return group


def _count_orders(group: GroupSummary, orders: Sequence[OrderFact]) -> None:
    if len(orders) == 1:
        kept = orders
    else:
        seen_ids: set[str] = set()
        duplicates, kept = [], []
        for order in orders:
            if order[2] in seen_ids:
                duplicates.append(order)
            else:
                seen_ids.add(order[2])
                kept.append(order)
        group.duplicate_orders = tuple(duplicates)
    group.orders = kept
    group.gross_e4 = sum(order[3] for order in kept)
    group.conversion_index = bisect_left(group.touches, (kept[0][0], kept[0][1]))


def _sorted(facts: Sequence) -> Sequence:
    if facts:
        facts.sort()  # type: ignore[attr-defined]  # in place: a journey's list order carries no meaning
    return facts


def _merged(parts: Sequence[Sequence]) -> list:
    merged = [item for part in parts for item in part]
    merged.sort()
    return merged


def _apply_refunds(group: GroupSummary) -> None:
    revenue = {order[2]: order[3] for order in group.orders}
    refunded: dict[str, int] = {}
    unmatched = []
    for refund in group.refunds:
        if refund[2] in revenue:
            refunded[refund[2]] = refunded.get(refund[2], 0) + refund[3]
        else:
            unmatched.append(refund)
    total = 0
    over = []
    for order_id, amount in refunded.items():
        if amount > revenue[order_id]:
            over.append((order_id, revenue[order_id], amount))
            amount = revenue[order_id]
        total += amount
    group.refunded_e4 = total
    group.unmatched_refunds = tuple(unmatched)
    group.over_refunded = tuple(sorted(over))
