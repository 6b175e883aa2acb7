"""Conversion time, maintained: order statistics of elapsed days per first-contact label.

Each group adds one of:

* a customer: its path length (touches before the first order) and, if it converted after
  a touch, its first-contact label and elapsed days (first order - first touch): kept per
  label and in all as sorted values (``SortedValues``), an exact sum (``ExactSum``: what
  ``math.fsum`` gives) and a histogram, so medians, p90 and means are read off;
* a prospect: its first-contact label and first-touch time in integer microseconds, kept
  sorted per label and in all, and in numpy columns at the group's slot (``_TimesColumn``),
  which are also all that is kept of its contribution.

A prospect's age depends on ``now``. Ages are ``max(0, (now - first touch) / 1 day)``,
decreasing with the first-touch time, so the ascending ages are the first-touch times
read backwards: medians, p90 and the histogram's bucket edges (bisection) cost O(log n)
per label. The mean is ``round(fsum(ages) / n, 3)``, and each age is rounded on its own,
so the float sum cannot be kept as ``now`` moves. Its exact real value can: with every
first touch at or before ``now``, the ages sum to ``(n * now - sum of first touches) / 1
day``, and the integer sum of first touches is kept per label. Each rounded age is within
a relative 2**-53 of its exact value and ``fsum`` rounds once more, so the float sum lies
within a relative 2**-52 of the exact one; when both ends of that interval give the same
rounded mean (all but never otherwise: the interval is ~1e-16 wide, the mean's steps
1e-3), that is the mean, without reading the column. Otherwise (or with a first touch
after ``now``, an age clipped at 0) one vectorised numpy pass over the column computes
every age and sums them exactly per label: it cost ~50 ms at every refresh at a million
customers when it ran every time.
Ages are computed as the definition's ``elapsed_days`` does: a ``timedelta`` divided by a
``timedelta`` is the correctly rounded quotient of their integer microseconds, and so is
the IEEE division of those integers (exact as floats below 2**53 µs, 285 years).

Maintained for one ``group_by`` (the default, ``first_channel``); any ``now``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from events.times import to_micros
from projections import parameters
from projections.aggregates.base import ContributionAggregate, ExactSum, SortedValues
from projections.conversion_time import GROUP_BY, conversion_time_document
from projections.figures import BUCKETS, DayValues, bucket, elapsed_days
from projections.group import GroupSummary
from projections.parameters import ViewParameterError
from projections.population import label_index, touch_label

_DAY_US = 86_400_000_000
_BUCKET_ORDER = {name: order for order, name in enumerate(BUCKETS)}

CUSTOMER, PROSPECT = 0, 1
# (CUSTOMER, path length, first-contact label or None, elapsed days or None)
# (PROSPECT, first-contact label, first-touch time in µs since the epoch)
Timing = tuple  # one of the two shapes above
_WITHOUT_TOUCH: Timing = (CUSTOMER, 0, None, None)  # a customer with no touch before the first order
class _InColumn:
    """The marker kept at a prospect's slot: its contribution is in ``_TimesColumn``."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "_IN_COLUMN"  # pickled by name (a saved views state): compared by identity


_IN_COLUMN = _InColumn()
_PLAIN_IN_COLUMN = 1  # the marker as a builtin (``to_plain``): a contribution is a tuple


class ConversionTime(ContributionAggregate[Timing]):
    """``conversion_time`` with one ``group_by`` and any ``now``."""

    view = "conversion_time"

    def __init__(self, group_by: str = "first_channel") -> None:
        super().__init__()
        if group_by not in GROUP_BY:
            raise ValueError(f"group_by: one of {GROUP_BY}, got {group_by!r}")
        self.group_by = group_by
        self._index = label_index(group_by.removeprefix("first_"))
        self._path_lengths: Counter[int] = Counter()  # customers per path length, no zero counts
        self._elapsed = _Days()
        self._elapsed_by_label: dict[str, _Days] = {}
        self._first_touches = SortedValues(typecode="q")  # every prospect's, µs
        self._first_touches_by_label: dict[str, SortedValues] = {}
        self._time_sums: dict[str | None, int] = {None: 0}  # sum of those first touches, µs; None: all
        self._column = _TimesColumn()

    def contribution(self, group: GroupSummary) -> Timing | None:
        first = group.first_touch
        if group.orders:
            if not group.conversion_index:
                return _WITHOUT_TOUCH
            elapsed = elapsed_days(group.orders[0][0], first[0])
            return (CUSTOMER, group.conversion_index, touch_label(first, self._index), elapsed)
        if first is None:
            return None
        return (PROSPECT, touch_label(first, self._index), to_micros(first[0]))

    def add(self, contribution: Timing) -> None:
        if contribution[0] == CUSTOMER:
            _, path_length, label, elapsed = contribution
            self._path_lengths[path_length] += 1
            if label is not None:
                self._elapsed.add(elapsed)
                days = self._elapsed_by_label.get(label)
                if days is None:
                    days = self._elapsed_by_label[label] = _Days()
                days.add(elapsed)
            return
        _, label, first_touch = contribution
        self._first_touches.add(first_touch)
        times = self._first_touches_by_label.get(label)
        if times is None:
            times = self._first_touches_by_label[label] = SortedValues(typecode="q")
        times.add(first_touch)
        sums = self._time_sums
        sums[None] += first_touch
        sums[label] = sums.get(label, 0) + first_touch

    def subtract(self, contribution: Timing) -> None:
        if contribution[0] == CUSTOMER:
            _, path_length, label, elapsed = contribution
            path_lengths = self._path_lengths
            path_lengths[path_length] -= 1
            if not path_lengths[path_length]:
                del path_lengths[path_length]
            if label is not None:
                self._elapsed.remove(elapsed)
                days = self._elapsed_by_label[label]
                days.remove(elapsed)
                if not len(days.ordered):
                    del self._elapsed_by_label[label]
            return
        _, label, first_touch = contribution
        self._first_touches.remove(first_touch)
        times = self._first_touches_by_label[label]
        times.remove(first_touch)
        sums = self._time_sums
        sums[None] -= first_touch
        sums[label] -= first_touch
        if not len(times):
            del self._first_touches_by_label[label]
            del sums[label]

    def keep(self, slot: int, held: Any, group: GroupSummary | None) -> Any:
        """As ``ContributionAggregate.keep``, but a prospect is held as ``_IN_COLUMN``: its
        label and first-touch time are in the column at its slot already, and a tuple a
        prospect cost ~64 bytes more."""
        new = None if group is None else self.contribution(group)
        old = self.given_back(slot, held)
        if new == old:  # most live changes (a prospect's later touch, a repeat order) leave it as it was
            return held
        if old is not None:
            if held is _IN_COLUMN:
                self._column.clear(slot)
            self.subtract(old)
        if new is None:
            return None
        self.add(new)
        if new[0] == PROSPECT:
            self._column.put(slot, new[1], new[2])
            return _IN_COLUMN
        return new

    def to_plain(self, held: Any) -> Any:
        return _PLAIN_IN_COLUMN if held is _IN_COLUMN else held

    def from_plain(self, plain: Any) -> Any:
        return _IN_COLUMN if plain == _PLAIN_IN_COLUMN else plain

    def given_back(self, slot: int, held: Any) -> Timing | None:
        if held is _IN_COLUMN:
            return (PROSPECT, *self._column.held(slot))
        return held

    def answers(self, params: Mapping[str, Any]) -> bool:
        if not set(params) <= {"group_by", "now"} or params.get("group_by", "first_channel") != self.group_by:
            return False
        try:
            parameters.moment("now", params.get("now"), required=True)
        except ViewParameterError:
            return False  # the definition says what is wrong
        return True

    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        at = parameters.moment("now", params["now"], required=True)
        now = to_micros(at)
        age_totals = self._age_totals(now)
        return conversion_time_document(
            self.group_by,
            at,
            conversions=self._elapsed.day_values(),
            conversions_by_label={label: days.day_values() for label, days in self._elapsed_by_label.items()},
            path_lengths=self._path_lengths,
            prospects=_ages(self._first_touches, now, age_totals[None]),
            prospects_by_label={
                label: _ages(times, now, age_totals[label]) for label, times in self._first_touches_by_label.items()
            },
        )

    def _age_totals(self, now: int) -> dict[str | None, float]:
        """Per label and (None) in all, a sum of the prospects' ages at ``now`` that gives the
        mean ``math.fsum`` of the ages gives (module docstring): from the kept sums of first
        touches when that decides the rounded mean, else from the column's exact pass."""
        by_label = self._first_touches_by_label
        totals: dict[str | None, float] = {}
        for label, times in ((None, self._first_touches), *by_label.items()):
            count = len(times)
            if not count:
                totals[label] = 0.0
                continue
            total = _decided_total(count, now, self._time_sums[label], times[count - 1])
            if total is None:
                return self._column.age_totals(now)
            totals[label] = total
        return totals


class _Days:
    """Elapsed days kept as the parts of ``DayValues``."""

    __slots__ = ("ordered", "total", "histogram")

    def __init__(self) -> None:
        self.ordered = SortedValues(typecode="d")  # elapsed_days: always a float
        self.total = ExactSum()
        self.histogram = dict.fromkeys(BUCKETS, 0)

    def add(self, value: float) -> None:
        self.ordered.add(value)
        self.total.add(value)
        self.histogram[bucket(value)] += 1

    def remove(self, value: float) -> None:
        self.ordered.remove(value)
        self.total.subtract(value)
        self.histogram[bucket(value)] -= 1

    def day_values(self) -> DayValues:
        return DayValues(self.ordered, self.total.value, dict(self.histogram))


class _AgesAt(Sequence[float]):
    """The ages at ``now`` of first touches kept ascending, in ascending order (the times
    read backwards), computed as they are read."""

    def __init__(self, times: SortedValues, now: int):
        self._times = times
        self._now = now

    def __len__(self) -> int:
        return len(self._times)

    def __getitem__(self, index):  # type: ignore[override]
        if not 0 <= index < len(self._times):
            raise IndexError(index)
        return max(0.0, (self._now - self._times[len(self._times) - 1 - index]) / _DAY_US)


_ROUNDING = Fraction(1, 2**53)  # the relative error of one correctly rounded float operation
_MARGIN = 4 * _ROUNDING  # > what an age's division and fsum's rounding may add together, and one more rounding


def _decided_total(count: int, now: int, time_sum: int, latest: int) -> float | None:
    """A float ``total`` with ``round(total / count, 3)`` equal to ``round(fsum(ages) / count, 3)``
    for the ``count`` ages at ``now`` of first touches summing to ``time_sum`` µs, the latest at
    ``latest``; None when that cannot be told without the ages (an age clipped at 0, or a
    rounding boundary within the float sum's error)."""
    if latest > now:
        return None
    exact = Fraction(count * now - time_sum, _DAY_US)
    low, high = float(exact * (1 - _MARGIN)), float(exact * (1 + _MARGIN))
    if round(low / count, 3) != round(high / count, 3):
        return None
    return float(exact)


def _ages(times: SortedValues, now: int, total: float) -> DayValues:
    ages = _AgesAt(times, now)
    histogram = dict.fromkeys(BUCKETS, 0)
    start = 0
    for order, name in enumerate(BUCKETS):
        end = (
            len(ages)
            if order == len(BUCKETS) - 1
            else bisect_left(ages, order + 1, lo=start, key=lambda age: _BUCKET_ORDER[bucket(age)])
        )
        histogram[name] = end - start
        start = end
    return DayValues(ages, total, histogram)


class _TimesColumn:
    """Prospects' first-touch times (µs) and label codes in numpy arrays at their groups'
    slots (``base.GroupSlots``), for the one vectorised pass that sums ages."""

    _FREE = 0  # the label code of a slot holding no prospect

    def __init__(self) -> None:
        self._times = np.zeros(1024, dtype=np.int64)
        self._codes = np.zeros(1024, dtype=np.int32)
        self._end = 0  # slots ever used: the arrays' live prefix
        self._held = 0  # slots holding a prospect
        self._code_of: dict[str, int] = {}
        self._labels: list[str | None] = [None]  # by code; code 0 is _FREE

    def put(self, slot: int, label: str, time: int) -> None:
        code = self._code_of.get(label)
        if code is None:
            code = self._code_of[label] = len(self._labels)
            self._labels.append(label)
        if slot >= len(self._times):
            size = max(slot + 1, len(self._times) + len(self._times) // 2)
            self._times = np.concatenate([self._times, np.zeros(size - len(self._times), dtype=np.int64)])
            self._codes = np.concatenate([self._codes, np.zeros(size - len(self._codes), dtype=np.int32)])
        if slot >= self._end:
            self._end = slot + 1
        if self._codes[slot] == self._FREE:
            self._held += 1
        self._times[slot] = time
        self._codes[slot] = code

    def held(self, slot: int) -> tuple[str | None, int]:
        """The label and first-touch time put at ``slot`` (which holds a prospect)."""
        return self._labels[self._codes[slot]], int(self._times[slot])

    def clear(self, slot: int) -> None:
        if slot < self._end and self._codes[slot] != self._FREE:
            self._codes[slot] = self._FREE
            self._held -= 1

    def age_totals(self, now: int) -> dict[str | None, float]:
        """The ``math.fsum`` of the prospects' ages at ``now``, per label and (None) in all."""
        if not self._held:
            return {None: 0.0}
        codes = self._codes[: self._end].astype(np.intp)
        ages = np.maximum((now - self._times[: self._end]).astype(np.float64) / _DAY_US, 0.0)
        units, exponent = _exact_sums(ages, codes, len(self._labels))
        totals: dict[str | None, float] = {
            label: _to_float(units[code], exponent) for code, label in enumerate(self._labels) if code
        }
        totals[None] = _to_float(sum(units[1:]), exponent)  # code 0: free slots
        return totals


def _exact_sums(values: np.ndarray, groups: np.ndarray, count: int) -> tuple[list[int], int]:
    """The exact sums of non-negative finite ``values`` per group (``groups``: codes below
    ``count``) as integers in units of ``2**exponent``.

    Each value is ``mantissa * 2**e`` with a 53-bit integer mantissa, split in two 26/27-bit
    halves; ``bincount`` adds the halves per (group, e) in float64, exactly while the sums
    stay below 2**53 (up to 2**26 values). Python integers add the rest."""
    fractions, exponents = np.frexp(values)
    mantissas = (fractions * 2.0**53).astype(np.int64)  # exact: 0.5 <= fraction < 1
    lowest = int(exponents.min())
    shifts = exponents - lowest
    span = int(shifts.max()) + 1
    bins = groups * span + shifts
    high = np.bincount(bins, weights=mantissas >> 26, minlength=count * span).reshape(count, span)
    low = np.bincount(bins, weights=mantissas & ((1 << 26) - 1), minlength=count * span).reshape(count, span)
    sums = []
    for group in range(count):
        total = 0
        for shift in np.flatnonzero(high[group] + low[group]).tolist():
            total += ((int(high[group, shift]) << 26) + int(low[group, shift])) << shift
        sums.append(total)
    return sums, lowest - 53


def _to_float(units: int, exponent: int) -> float:
    """``units * 2**exponent`` correctly rounded (as ``math.fsum`` rounds its exact sum)."""
    return units / (1 << -exponent) if exponent < 0 else float(units << exponent)
