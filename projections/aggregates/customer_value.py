"""The top customers and the prospects, maintained: ordered structures of every group's
sort key, so the shown rows come from the top of an ordered list, not a walk of the groups.

``TopCustomers`` (``top_customers`` by revenue): each customer adds ``(-net revenue, root,
orders, last order time in µs, listed)``, kept sorted in one of two rankings: of those who may be
listed (``projections.consent``), whose first ``limit`` are the rows in the definition's
order, and of those whose analytics consent is withdrawn. A row's RFM scores are quintiles
over every customer (``figures.quintile_scores``: the count of values strictly below a
value); they are read off order statistics for the shown rows only: recency from the
sorted last order times, frequency from a count of customers per order count, monetary
from both revenue rankings. Days since the last order depend on ``now`` for the shown rows only.

``Prospects`` (``prospects``, every channel): each prospect adds ``(last touch, root,
listed)``, the last touch's time and position as one int (µs x 2^64 + position: ordered as
the pair); those listed are kept sorted, the latest coming off its end, the others only
counted. Rows read the group's summary through ``population.group`` (one look-up per shown
row), so the contributions stay three fields long.

Both aggregates hold every customer's or prospect's contribution (their rankings are made of
them), so their size is that of the population: times are ints, not ``datetime`` objects, and
the prospect's pair one int, ~100 bytes a prospect where the tuple of four took ~150 (at a
million customers ~0.8M prospects and ~0.5M buyers).

Rows are rendered by the definitions' own ``customer_row`` and ``prospect_row``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from events.times import moment_key, to_micros
from projections import parameters
from projections.aggregates.base import ContributionAggregate, SortedValues
from projections.consent import listed
from projections.customer_value import customer_row, prospect_row, prospects_document, top_customers_document
from projections.figures import quintile_score
from projections.group import GroupSummary
from projections.parameters import ViewParameterError

# (-net revenue e4, root, orders, last order time µs, listed): sorted, the revenue ranking itself
CustomerValue = tuple[int, str, int, int, bool]
# (moment_key of the last touch: µs x 2^64 + its position, root, listed): sorted, latest last
LastTouch = tuple[int, str, bool]


class TopCustomers(ContributionAggregate[CustomerValue]):
    """``top_customers`` ranked by revenue, with any ``limit``."""

    view = "top_customers"
    totals_hold_them = True  # the rankings

    def __init__(self) -> None:
        super().__init__()
        self._ranking = SortedValues()  # listed contributions by (-net revenue, root)
        self._withdrawn = SortedValues()  # the others, by the same order
        self._last_orders = SortedValues(typecode="q")  # every customer's last order time, µs
        self._order_counts: Counter[int] = Counter()  # customers per order count: few distinct counts
        self._net_e4 = 0

    def contribution(self, group: GroupSummary) -> CustomerValue | None:
        if not group.orders:
            return None
        return (-group.net_e4, group.root, len(group.orders), to_micros(group.orders[-1][0]), listed(group))

    def _ranking_of(self, contribution: CustomerValue) -> SortedValues:
        return self._ranking if contribution[4] else self._withdrawn

    def add(self, contribution: CustomerValue) -> None:
        self._ranking_of(contribution).add(contribution)
        self._last_orders.add(contribution[3])
        self._order_counts[contribution[2]] += 1
        self._net_e4 -= contribution[0]

    def subtract(self, contribution: CustomerValue) -> None:
        self._ranking_of(contribution).remove(contribution)
        self._last_orders.remove(contribution[3])
        counts = self._order_counts
        counts[contribution[2]] -= 1
        if not counts[contribution[2]]:
            del counts[contribution[2]]
        self._net_e4 += contribution[0]

    def answers(self, params: Mapping[str, Any]) -> bool:
        if set(params) - {"now", "by", "limit"} or params.get("by", "revenue") != "revenue":
            return False
        return _valid(params)

    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        at = parameters.moment("now", params["now"], required=True)
        limit = parameters.positive_int("limit", params.get("limit", 20))
        population.summaries.refresh()  # the look-ups below must not change the ranking
        rows = [
            customer_row(population.group(value[1]), self._scores(value), at)
            for value in self._ranking[:limit]
        ]
        withdrawn = len(self._withdrawn)
        return top_customers_document("revenue", limit, at, len(self._ranking) + withdrawn, self._net_e4, withdrawn,
                                      rows)

    def _scores(self, value: CustomerValue) -> tuple[int, int, int]:
        n = len(self._ranking) + len(self._withdrawn)
        negated_net, _, orders, last_order, _ = value
        recency = _below(self._last_orders, last_order)
        frequency = sum(count for orders_of, count in self._order_counts.items() if orders_of < orders)
        # net revenue strictly below: the contributions ranked from (1 - net,) on, as -net is an integer
        monetary = n - _below(self._ranking, (negated_net + 1,)) - _below(self._withdrawn, (negated_net + 1,))
        return quintile_score(recency, n), quintile_score(frequency, n), quintile_score(monetary, n)


class Prospects(ContributionAggregate[LastTouch]):
    """``prospects`` of every channel, with any ``limit``."""

    view = "prospects"
    totals_hold_them = True  # the listed ones sorted; the withdrawn ones are few (consent)

    def __init__(self) -> None:
        super().__init__()
        self._latest = SortedValues()  # the listed prospects
        self._withdrawn = 0  # prospects whose analytics consent is withdrawn

    def contribution(self, group: GroupSummary) -> LastTouch | None:
        if group.orders or not group.touches:
            return None
        last = group.touches[-1]
        return (moment_key(last[0], last[1]), group.root, listed(group))

    def add(self, contribution: LastTouch) -> None:
        if contribution[2]:
            self._latest.add(contribution)
        else:
            self._withdrawn += 1

    def subtract(self, contribution: LastTouch) -> None:
        if contribution[2]:
            self._latest.remove(contribution)
        else:
            self._withdrawn -= 1

    def answers(self, params: Mapping[str, Any]) -> bool:
        if set(params) - {"now", "limit", "channel"} or params.get("channel") is not None:
            return False
        return _valid(params)

    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        at = parameters.moment("now", params["now"], required=True)
        limit = parameters.positive_int("limit", params.get("limit", 100))
        population.summaries.refresh()  # the look-ups below must not change the order
        rows = [prospect_row(population.group(root), at) for root in self._latest_roots(limit)]
        return prospects_document(at, None, limit, len(self._latest) + self._withdrawn, self._withdrawn, rows)

    def _latest_roots(self, limit: int) -> list[str]:
        """The ``limit`` latest by last touch; equal last touches in root order, as the
        definition's stable ``heapq.nlargest`` over groups in root order gives them."""
        latest = self._latest
        roots: list[str] = []
        end = len(latest)
        while end and len(roots) < limit:
            start = _below(latest, latest[end - 1][:1])  # the run sharing that last touch
            roots.extend(value[1] for value in latest[start:end])
            end = start
        return roots[:limit]


def _below(ordered: SortedValues, value: Any) -> int:
    """How many of the ordered values are strictly below ``value``."""
    return ordered.bisect_left(value)


def _valid(params: Mapping[str, Any]) -> bool:
    """``now`` and ``limit`` are what the definition accepts (else it reports the error)."""
    try:
        parameters.moment("now", params.get("now"), required=True)
        parameters.positive_int("limit", params.get("limit", 1))
    except ViewParameterError:
        return False
    return True
