"""Checking the models' input: a fast whole-batch test, then a precise per-path diagnosis.

`check_paths` runs C-speed set/map passes over all paths at once; only when
one of them fails does it walk the paths one by one to name the first bad
path and field. A fast failure that turns out harmless (a ``str`` subclass as
a label, a numpy float as an age) is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
import numpy as np

from projections.attribution.paths import Path


@dataclass(frozen=True, slots=True)
class Columns:
    """The paths' fields as parallel lists, and their touches flattened in path order."""

    touches: list
    converted: list
    values: list
    lengths: list[int]
    flat: list
    labels: tuple
    ages: list

    @classmethod
    def of(cls, paths: Sequence[Path]) -> Columns:
        touches = [p.touches for p in paths]
        flat = list(chain.from_iterable(touches))
        return cls(
            touches=touches,
            converted=[p.converted for p in paths],
            values=[p.value for p in paths],
            lengths=list(map(len, touches)),
            flat=flat,
            labels=tuple(map(itemgetter(0), flat)),
            ages=list(map(itemgetter(1), flat)),
        )


def check_paths(paths: Sequence[Path]) -> Columns:
    """The paths as `Columns`; raise `ValueError` naming ``paths[i].<field>`` for the first malformed path."""
    try:
        columns = Columns.of(paths)
    except (TypeError, IndexError):
        _raise_first_problem(paths)
        raise
    try:
        plainly_valid = _plainly_valid(columns)
    except OverflowError:  # an int beyond the float range
        plainly_valid = False
    if not plainly_valid:
        _raise_first_problem(paths)
    return columns


def _raise_first_problem(paths: Sequence[Path]) -> None:
    for index, path in enumerate(paths):
        problem = path_problem(path)
        if problem:
            raise ValueError(f"paths[{index}].{problem}")


def path_problem(path: Path) -> str:
    """What is wrong with one path (``field: reason``), or "" when nothing is."""
    converted, value, touches = path.converted, path.value, path.touches
    if converted is not True and converted is not False:
        return f"converted: must be True or False, got {converted!r}"
    if converted:
        if not _finite_non_negative(value):
            return f"value: must be a finite number >= 0, got {value!r}"
    elif not _is_number(value) or value != 0.0:
        return f"value: must be 0.0 for a non-converting path, got {value!r}"
    if not isinstance(touches, tuple):
        return f"touches: must be a tuple of (label, age_days) pairs, got {type(touches).__name__}"
    previous_age = math.inf
    for position, touch in enumerate(touches):
        if not (isinstance(touch, tuple) and len(touch) == 2):
            return f"touches[{position}]: must be a (label, age_days) pair, got {touch!r}"
        label, age = touch
        if not isinstance(label, str) or not label:
            return f"touches[{position}].label: must be a non-empty string, got {label!r}"
        if not _finite_non_negative(age):
            return f"touches[{position}].age_days: must be a finite number >= 0, got {age!r}"
        if age > previous_age:
            return (
                f"touches[{position}].age_days: touches must be oldest first (age_days never increasing), "
                f"got {age!r} after {previous_age!r}"
            )
        previous_age = age
    return ""


def _plainly_valid(c: Columns) -> bool:
    """The common case, checked in bulk: plain bools, floats, tuples and strings, ages in order."""
    if not set(map(type, c.converted)) <= {bool} or not set(map(type, c.values)) <= {float, int}:
        return False
    if not set(map(type, c.touches)) <= {tuple}:
        return False
    values = np.array(c.values, dtype=float)
    converted = np.array(c.converted, dtype=bool)
    converting_values = values[converted]
    if not (np.all(np.isfinite(converting_values)) and np.all(converting_values >= 0)):
        return False
    if np.any(values[~converted] != 0.0):
        return False
    if not c.flat:
        return True
    if not set(map(type, c.flat)) <= {tuple} or not set(map(len, c.flat)) <= {2}:
        return False
    labels = set(c.labels)
    if not set(map(type, labels)) <= {str} or "" in labels or not set(map(type, c.ages)) <= {float, int}:
        return False
    ages = np.array(c.ages, dtype=float)
    if not (np.all(np.isfinite(ages)) and np.all(ages >= 0)):
        return False
    rising = ages[1:] > ages[:-1]
    starts = np.cumsum(c.lengths)[:-1]  # where each next path begins in the flat list
    rising[starts[(starts > 0) & (starts < len(ages))] - 1] = False
    return not np.any(rising)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite_non_negative(value: object) -> bool:
    try:
        return _is_number(value) and 0.0 <= float(value) < math.inf  # type: ignore[arg-type]
    except OverflowError:  # an int beyond the float range
        return False
