"""First-contact attribution: which channel (or campaign, or source) first reached each group.

First contact = the earliest touch of a group (by occurred_at, then position).
Per first-contact label: ``reached`` groups, ``converted`` (their first order came
after the first contact), ``conversion_rate`` and ``revenue`` (net lifetime
revenue of the converted: orders minus refunds). A first touch without a campaign (or
a source) counts under ``"(none)"`` (``population.NO_LABEL``). ``from``/``to`` filter groups
by the time of their first contact, ``[from, to)``. A query over the population.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from projections import parameters
from projections.figures import iso, money, rate
from projections.population import GROUP_BY, Population, label_index, touch_label

VERSION = 1


def first_contact_view(
    population: Population, *, group_by: str = "channel", start: object = None, end: object = None
) -> dict:
    group_by = parameters.choice("group_by", group_by, GROUP_BY)
    lower, upper = parameters.window(start, end)
    index = label_index(group_by)
    tallies: dict[str, list[int]] = {}
    for group in population.groups():
        first = group.first_touch
        if first is None:
            continue
        if (lower is not None and first[0] < lower) or (upper is not None and first[0] >= upper):
            continue
        label = touch_label(first, index)
        tally = tallies.get(label)
        if tally is None:
            tally = tallies[label] = [0, 0, 0]
        tally[0] += 1
        if group.converted_after_touch:
            tally[1] += 1
            tally[2] += group.net_e4
    return first_contact_document(group_by, lower, upper, tallies)


def first_contact_document(
    group_by: str, lower: datetime | None, upper: datetime | None, tallies: Mapping[str, Sequence[int]]
) -> dict:
    """The document from ``(reached, converted, revenue_e4)`` per label (labels reached
    by no group left out); also rendered by the maintained view."""
    rows = [
        {
            group_by: label,
            "reached": reached,
            "converted": converted,
            "conversion_rate": rate(converted, reached),
            "revenue": money(revenue),
        }
        for label, (reached, converted, revenue) in sorted(
            tallies.items(), key=lambda item: (-item[1][0], -item[1][1], item[0])
        )
    ]
    reached = sum(tally[0] for tally in tallies.values())
    converted = sum(tally[1] for tally in tallies.values())
    return {
        "group_by": group_by,
        "from": iso(lower),
        "to": iso(upper),
        "reached": reached,
        "converted": converted,
        "conversion_rate": rate(converted, reached),
        "revenue": money(sum(tally[2] for tally in tallies.values())),
        "rows": rows,
    }
