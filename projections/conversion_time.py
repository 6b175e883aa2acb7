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

from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from itertools import accumulate

from projections import parameters
from projections.figures import BUCKET_RULE, BUCKETS, DayValues, day_stats_of, day_values, elapsed_days, iso, quantile
from projections.population import Population, label_index, touch_label

VERSION = 1
GROUP_BY = ("first_channel", "first_campaign", "first_source")


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
    return conversion_time_document(
        group_by,
        at,
        conversions=day_values(value for times in elapsed.values() for value in times),
        conversions_by_label={label: day_values(times) for label, times in elapsed.items()},
        path_lengths=path_lengths,
        prospects=day_values(value for times in ages.values() for value in times),
        prospects_by_label={label: day_values(times) for label, times in ages.items()},
    )


def conversion_time_document(
    group_by: str,
    now: datetime,
    *,
    conversions: DayValues,
    conversions_by_label: Mapping[str, DayValues],
    path_lengths: Mapping[int, int],
    prospects: DayValues,
    prospects_by_label: Mapping[str, DayValues],
) -> dict:
    """The document from its parts (also rendered by the maintained view): elapsed days
    of conversions and ages of prospects, in all and per first-contact label, and how many
    customers had each path length (no zero counts)."""

    def table(by_label: Mapping[str, DayValues], count_key: str) -> list[dict]:
        ordered = sorted(by_label.items(), key=lambda item: (-len(item[1].ordered), item[0]))
        return [{group_by: label, count_key: len(values.ordered), **day_stats_of(values)} for label, values in ordered]

    return {
        "group_by": group_by,
        "now": iso(now),
        "buckets": list(BUCKETS),
        "bucket_rule": BUCKET_RULE,
        "conversions": len(conversions.ordered),
        **day_stats_of(conversions),
        "rows": table(conversions_by_label, "conversions"),
        "path_length": _path_length(path_lengths),
        "prospects": {
            "prospects": len(prospects.ordered),
            **day_stats_of(prospects),
            "rows": table(prospects_by_label, "prospects"),
        },
    }


def _path_length(counts: Mapping[int, int]) -> dict:
    lengths = _Counted(counts)
    total = len(lengths)
    return {
        "customers": total,
        "mean_touches": round(float(lengths.sum) / total, 3) if total else None,  # math.fsum of the lengths
        "median_touches": round(quantile(lengths, 0.5), 3) if total else None,
        "p90_touches": round(quantile(lengths, 0.9), 3) if total else None,
        "distribution": [{"touches": length, "customers": counts[length]} for length in sorted(counts)],
    }


class _Counted(Sequence[int]):
    """The ascending list of whole numbers a count per number stands for, without
    writing it out: ``quantile`` reads two of its items."""

    def __init__(self, counts: Mapping[int, int]):
        self._values = sorted(counts)
        self._ends = list(accumulate(counts[value] for value in self._values))  # exclusive end index per value
        self.sum = sum(value * counts[value] for value in self._values)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, index):  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._values[bisect_right(self._ends, index)]
