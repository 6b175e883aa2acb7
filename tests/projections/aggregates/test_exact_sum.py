"""An exact sum keeps its integer in the units of the finest term it was given."""

import math

from projections.aggregates.base import ExactSum


def test_exact_sum__a_finer_term_after_coarse_ones_keeps_them_exact():
    total = ExactSum()
    for value in (1e300, 3.0, -1e300):
        total.add(value)

    total.add(2.0**-1074)

    assert total.value == math.fsum([3.0, 2.0**-1074]) == 3.0
    total.subtract(3.0)
    assert total.value == 2.0**-1074


def test_exact_sum__the_integer_stays_small_for_cents():
    total = ExactSum()
    for cents in range(1, 10_001):
        total.add(cents / 100)

    assert total.value == math.fsum(cents / 100 for cents in range(1, 10_001))
    assert total._units.bit_length() < 128
