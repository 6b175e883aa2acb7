"""How the views write numbers and times, so their documents are deterministic.

Money: float rounded to 2 decimals. Days: float rounded to 3 decimals. Rates
and fractional credits: 4 decimals. Times: ISO 8601 in UTC with a ``Z``.
Percentiles interpolate linearly between the closest ranks (numpy's default).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import NamedTuple

from projections.journey import DAY, MONEY_SCALE

SAME_DAY = "same_day"
BUCKETS = (SAME_DAY, "1-7d", "8-30d", "31-90d", "91-365d", ">1y")
BUCKET_RULE = (
    "whole days elapsed (rounded down): same_day = less than 24 hours, 1-7d = 1 to 7 whole days, "
    "8-30d, 31-90d, 91-365d, >1y = 366 whole days or more"
)
_BUCKET_UPPER = (1, 8, 31, 91, 366)  # exclusive upper bounds in whole days


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # the log's times are UTC; a naive one is read as such
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def money(e4: int) -> float:
    return round(e4 / MONEY_SCALE, 2)


def amount(value: float) -> float:
    return round(value, 2)


def elapsed_days(later: datetime, earlier: datetime) -> float:
    """Days from ``earlier`` to ``later`` as a decimal, never negative."""
    return max(0.0, (later - earlier) / DAY)


def days(value: float) -> float:
    return round(value, 3)


def rate(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def credit(value: float) -> float:
    return round(value, 4)


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks of an ascending sequence (numpy's
    default ``method="linear"``)."""
    if not ordered:
        raise ValueError("quantile of no values")
    h = (len(ordered) - 1) * q
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


def bucket(elapsed_days: float) -> str:
    whole = math.floor(elapsed_days)
    for name, upper in zip(BUCKETS, _BUCKET_UPPER):
        if whole < upper:
            return name
    return BUCKETS[-1]


class DayValues(NamedTuple):
    """Elapsed times in days, as ``day_stats_of`` reads them (a maintained view keeps
    these parts instead of the values)."""

    ordered: Sequence[float]  # ascending; any sequence (``quantile`` reads two of them)
    total: float  # their ``math.fsum``
    histogram: dict[str, int]  # how many fall in each of ``BUCKETS``, in that order


def day_values(elapsed: Iterable[float]) -> DayValues:
    ordered = sorted(elapsed)
    histogram = dict.fromkeys(BUCKETS, 0)
    for value in ordered:
        histogram[bucket(value)] += 1
    return DayValues(ordered, math.fsum(ordered), histogram)


def day_stats(elapsed: Iterable[float]) -> dict[str, object]:
    """Mean, median, p90 and histogram of elapsed times given in days."""
    return day_stats_of(day_values(elapsed))


def day_stats_of(values: DayValues) -> dict[str, object]:
    ordered = values.ordered
    if not ordered:
        return {"mean_days": None, "median_days": None, "p90_days": None, "histogram": values.histogram}
    return {
        "mean_days": round(values.total / len(ordered), 3),
        "median_days": round(quantile(ordered, 0.5), 3),
        "p90_days": round(quantile(ordered, 0.9), 3),
        "histogram": values.histogram,
    }


def quintile_scores(values: Sequence[float]) -> list[int]:
    """Score 1-5 per value, higher value = higher score: ``1 + 5 * (values strictly
    lower) // n``, so equal values share a score and n distinct values spread evenly."""
    ordered = sorted(values)
    n = len(ordered)
    return [quintile_score(bisect_left(ordered, value), n) for value in values]


def quintile_score(lower: int, n: int) -> int:
    """The score of a value that ``lower`` of the ``n`` scored values are strictly below."""
    return 1 + 5 * lower // n
