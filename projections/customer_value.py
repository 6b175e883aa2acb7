"""Customer value, prospects and the funnel: who is worth most, who is on the way.

* ``top_customers_view``: groups with at least one order, with net revenue
  (orders minus refunds), orders, and recency/frequency/monetary scores 1-5
  (quintiles over all customers: ``figures.quintile_scores``; recency ranks the
  latest order, frequency the order count, monetary the net revenue). Ranked
  ``by`` revenue, orders or rfm (sum of the three scores), ties by net revenue,
  then identity.
* ``prospects_view``: groups with a touch and no order, most recently active first.
* Both list only people who may be named (``projections.consent``: not those whose
  analytics consent is withdrawn); ``customers``/``prospects``, ``revenue`` and the scores
  count everyone, and ``consent_withdrawn`` says how many of them are not listed.
* ``funnel_view``: reached -> converted (first order after first contact) ->
  repeat buyers (of those, two orders or more).

``now`` is a parameter (recency, ages); an order or touch after ``now`` counts
as 0 days ago. Queries over the population.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from projections import parameters
from projections.consent import listed
from projections.figures import days, elapsed_days, iso, money, quintile_scores, rate
from projections.group import GroupSummary

if TYPE_CHECKING:  # the maintained views import the rows from here, and the population imports them
    from projections.population import Population

VERSION = 2  # 2: people whose analytics consent is withdrawn are not listed
RANK_BY = ("revenue", "orders", "rfm")


def top_customers_view(population: Population, *, now: object, by: str = "revenue", limit: object = 20) -> dict:
    at = parameters.moment("now", now, required=True)
    by = parameters.choice("by", by, RANK_BY)
    limit = parameters.positive_int("limit", limit)
    customers, scores = population.summaries.cached(("rfm",), lambda: _rfm(population))
    if by == "revenue":
        order = sorted(range(len(customers)), key=lambda i: (-customers[i].net_e4, customers[i].root))
    elif by == "orders":
        order = sorted(
            range(len(customers)),
            key=lambda i: (-len(customers[i].orders), -customers[i].net_e4, customers[i].root),
        )
    else:
        order = sorted(range(len(customers)), key=lambda i: (-sum(scores[i]), -customers[i].net_e4, customers[i].root))
    shown = [i for i in order if listed(customers[i])]
    rows = [customer_row(customers[i], scores[i], at) for i in shown[:limit]]
    revenue_e4 = sum(group.net_e4 for group in customers)
    return top_customers_document(by, limit, at, len(customers), revenue_e4, len(customers) - len(shown), rows)


def top_customers_document(
    by: str, limit: int, now: datetime, customers: int, revenue_e4: int, withdrawn: int, rows: list
) -> dict:
    """The top customers document around its rows (also rendered by the maintained view)."""
    return {
        "by": by,
        "limit": limit,
        "now": iso(now),
        "customers": customers,
        "revenue": money(revenue_e4),
        "consent_withdrawn": withdrawn,
        "rows": rows,
    }


def _rfm(population: Population) -> tuple[list[GroupSummary], list[tuple[int, int, int]]]:
    customers = [group for group in population.groups() if group.orders]
    recency = quintile_scores([group.orders[-1][0] for group in customers])
    frequency = quintile_scores([len(group.orders) for group in customers])
    monetary = quintile_scores([group.net_e4 for group in customers])
    return customers, list(zip(recency, frequency, monetary))


def customer_row(group: GroupSummary, scores: tuple[int, int, int], now: datetime) -> dict:
    first_touch = group.first_touch
    return {
        "identity": group.root,
        "orders": len(group.orders),
        "revenue": money(group.net_e4),
        "gross_revenue": money(group.gross_e4),
        "refunded": money(group.refunded_e4),
        "first_order_at": iso(group.orders[0][0]),
        "last_order_at": iso(group.orders[-1][0]),
        "recency_days": days(elapsed_days(now, group.orders[-1][0])),
        "recency_score": scores[0],
        "frequency_score": scores[1],
        "monetary_score": scores[2],
        "rfm": "".join(map(str, scores)),
        "first_contact_channel": None if first_touch is None else first_touch[2],
        "identities": len(group.members),
    }


def prospects_view(population: Population, *, now: object, limit: object = 100, channel: object = None) -> dict:
    at = parameters.moment("now", now, required=True)
    limit = parameters.positive_int("limit", limit)
    channel = parameters.optional_text("channel", channel)
    prospects = [
        group
        for group in population.groups()
        if group.touches and not group.orders and (channel is None or group.touches[0][2] == channel)
    ]
    shown = [group for group in prospects if listed(group)]
    # groups come in root order and nlargest is stable: ties (never in a real log,
    # where positions differ) keep that order
    latest = heapq.nlargest(limit, shown, key=lambda group: group.touches[-1][:2])
    rows = [prospect_row(group, at) for group in latest]
    return prospects_document(at, channel, limit, len(prospects), len(prospects) - len(shown), rows)


def prospects_document(
    now: datetime, channel: str | None, limit: int, prospects: int, withdrawn: int, rows: list
) -> dict:
    """The prospects document around its rows (also rendered by the maintained view)."""
    return {"now": iso(now), "channel": channel, "limit": limit, "prospects": prospects,
            "consent_withdrawn": withdrawn, "rows": rows}


def prospect_row(group: GroupSummary, now: datetime) -> dict:
    first, last = group.touches[0], group.touches[-1]
    channels = list(dict.fromkeys(touch[2] for touch in group.touches))
    return {
        "identity": group.root,
        "first_contact": {"occurred_at": iso(first[0]), "channel": first[2], "campaign": first[3]},
        "last_touch": {"occurred_at": iso(last[0]), "channel": last[2], "campaign": last[3]},
        "touches": len(group.touches),
        "channels": channels,
        "age_days": days(elapsed_days(now, first[0])),
        "days_since_last_touch": days(elapsed_days(now, last[0])),
    }


# the funnel's counts a group can be in, one bit each (``funnel_flags``)
REACHED, PROSPECT, CUSTOMER, CONVERTED, REPEAT_BUYER, WITHOUT_TOUCH = (1 << bit for bit in range(6))


def funnel_flags(group: GroupSummary) -> int:
    """The funnel's counts ``group`` is in, as bits: a small int, cheap to keep per group."""
    flags = REACHED if group.touches else 0
    if group.orders:
        flags |= CUSTOMER
        if group.converted_after_touch:
            flags |= CONVERTED | (REPEAT_BUYER if len(group.orders) > 1 else 0)
        else:
            flags |= WITHOUT_TOUCH
    elif group.touches:
        flags |= PROSPECT
    return flags


def funnel_view(population: Population) -> dict:
    return funnel_document(Counter(map(funnel_flags, population.groups())), len(population.journeys))


def funnel_document(groups_by_flags: Mapping[int, int], identities: int) -> dict:
    """The funnel from how many groups have each ``funnel_flags`` value (also rendered by
    the maintained view)."""

    def count(flag: int) -> int:
        return sum(groups for flags, groups in groups_by_flags.items() if flags & flag)

    reached, converted, repeat = count(REACHED), count(CONVERTED), count(REPEAT_BUYER)
    return {
        "groups": sum(groups_by_flags.values()),
        "identities": identities,
        "reached": reached,
        "prospects": count(PROSPECT),
        "converted": converted,
        "repeat_buyers": repeat,
        "conversion_rate": rate(converted, reached),
        "repeat_rate": rate(repeat, converted),
        "customers": count(CUSTOMER),
        "customers_without_touch_before_order": count(WITHOUT_TOUCH),
        "stages": [
            {"stage": "reached", "groups": reached},
            {"stage": "converted", "groups": converted},
            {"stage": "repeat_buyers", "groups": repeat},
        ],
    }
