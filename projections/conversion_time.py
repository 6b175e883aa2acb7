"""Conversion time: from first contact to conversion, per first-contact label.

A conversion here is a group whose first order came after its first contact;
elapsed = first order - first touch. Per label: ``conversions``, ``mean_days``,
``median_days``, ``p90_days`` (linear interpolation between closest ranks) and
a histogram over fixed buckets (``figures.BUCKET_RULE``: "same day" means less
than 24 hours elapsed, not the same calendar day). Also the distribution of
path lengths (touches before the first order, over every customer, so 0 counts
the unattributed) and the age of prospects since their first contact at
``now`` (a first contact after ``now`` counts as age 0). A query over the population.
"""

from __future__ import annotations

import math
from collections import Counter

from projections import parameters
from projections.figures import BUCKET_RULE, BUCKETS, day_stats, elapsed_days, iso, quantile
from projections.population import Population, label_index, touch_label

VERSION = 1
GROUP_BY = ("first_channel", "first_campaign")


def conversion_time_view(population: Population, *, now: object, group_by: str = "first_channel") -> dict:
    at = parameters.moment("now", now, required=True)
    group_by = parameters.choice("group_by", group_by, GROUP_BY)
    index = label_index(group_by.removeprefix("first_"))
    elapsed: dict[str, list[float]] = {}
    ages: dict[str, list[float]] = {}
    path_lengths: Counter[int] = Counter()
    for group in population.groups():
        first = group.first_touch
        if group.orders:
            path_lengths[group.conversion_index] += 1
            if group.conversion_index:
                elapsed.setdefault(touch_label(first, index), []).append(elapsed_days(group.orders[0][0], first[0]))
        elif first is not None:
            ages.setdefault(touch_label(first, index), []).append(elapsed_days(at, first[0]))

    def table(values: dict[str, list[float]], count_key: str) -> list[dict]:
        ordered = sorted(values.items(), key=lambda item: (-len(item[1]), item[0]))
        return [{group_by: label, count_key: len(times), **day_stats(times)} for label, times in ordered]

    all_elapsed = [value for times in elapsed.values() for value in times]
    all_ages = [value for times in ages.values() for value in times]
    return {
        "group_by": group_by,
        "now": iso(at),
        "buckets": list(BUCKETS),
        "bucket_rule": BUCKET_RULE,
        "conversions": len(all_elapsed),
        **day_stats(all_elapsed),
        "rows": table(elapsed, "conversions"),
        "path_length": _path_length(path_lengths),
        "prospects": {"prospects": len(all_ages), **day_stats(all_ages), "rows": table(ages, "prospects")},
    }


def _path_length(counts: Counter[int]) -> dict:
    lengths = sorted(counts.elements())
    total = len(lengths)
    return {
        "customers": total,
        "mean_touches": round(math.fsum(lengths) / total, 3) if total else None,
        "median_touches": round(quantile(lengths, 0.5), 3) if total else None,
        "p90_touches": round(quantile(lengths, 0.9), 3) if total else None,
        "distribution": [{"touches": length, "customers": counts[length]} for length in sorted(counts)],
    }
