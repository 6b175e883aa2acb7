"""The building blocks of the maintained views: exact sums and sorted multisets."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.aggregates.base import ExactSum, SortedValues

FLOATS = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@given(st.lists(FLOATS, max_size=60), st.data())
def test_exact_sum__after_adds_and_subtracts_in_any_order_equals_fsum_of_what_remains(values, data):
    # given some values added, and some of them subtracted again, in a random order
    removed = data.draw(st.lists(st.sampled_from(values), unique_by=id, max_size=len(values)) if values else st.just([]))
    kept = list(values)
    for value in removed:
        kept.remove(value)
    total = ExactSum()
    for value in data.draw(st.permutations(values)):
        total.add(value)
    for value in removed:
        total.subtract(value)

    # then the total is exactly what math.fsum gives for the values kept
    assert total.value == math.fsum(kept)


def test_exact_sum__of_tiny_and_huge_terms_loses_nothing():
    # given terms whose float sum would lose the small ones
    total = ExactSum()
    for value in (1e16, 1.0, -1e16, 5e-324):
        total.add(value)

    # then the small ones survive, exactly
    assert total.value == math.fsum([1e16, 1.0, -1e16, 5e-324]) == 1.0


@pytest.mark.parametrize("typecode, kind", [(None, int), ("q", int), ("d", float)], ids=["lists", "int64", "float64"])
@settings(max_examples=200)
@given(st.lists(st.tuples(st.booleans(), st.integers(-50, 50)), max_size=400), st.integers(2, 8))
def test_sorted_values__behave_like_a_sorted_list_under_adds_and_removes(typecode, kind, operations, load):
    # given small blocks, so that splits and emptied blocks happen often, held in lists or in typed arrays
    values = SortedValues(load=load, typecode=typecode)
    expected: list = []

    # when values are added and removed
    for add, value in operations:
        value = kind(value)
        if add or value not in expected:
            values.add(value)
            expected.append(value)
            expected.sort()
        else:
            values.remove(value)
            expected.remove(value)

    # then order, length, positions and ranks are a sorted list's, the values of the type put in
    assert list(values) == expected == values.values
    assert all(type(value) is kind for value in values)
    assert list(reversed(values)) == expected[::-1]
    assert len(values) == len(expected)
    assert [values[i] for i in range(-len(expected), len(expected))] == expected + expected
    for start, stop in ((0, 3), (2, -1), (-5, None), (None, None), (7, 3)):
        assert values[start:stop] == expected[start:stop]
    for probe in (-51, -10, 0, 10, 51):
        assert values.bisect_left(probe) == bisect_left(expected, probe)
        assert values.bisect_right(probe) == bisect_right(expected, probe)


def test_sorted_values__removing_a_value_not_held_names_it():
    # given a multiset of 1 and 3
    values = SortedValues([3, 1])

    # when 2 is removed, then KeyError(2)
    try:
        values.remove(2)
    except KeyError as error:
        assert error.args == (2,)
    else:
        raise AssertionError("removing 2 did not raise")
