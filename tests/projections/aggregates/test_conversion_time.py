"""The maintained conversion time renders what its definition computes, at any ``now``."""

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.live_views import VIEW_SPECS
from projections.aggregates import MaintainedViews
from projections.aggregates.conversion_time import (
    _DAY_US,
    ConversionTime,
    _decided_total,
    _exact_sums,
    _TimesColumn,
    _to_float,
)
from projections.conversion_time import conversion_time_view
from tests.projections.aggregates.maintained import assert_maintained_like_defined, demo_log, spec_log
from tests.projections.spec import merge, order, touch
from tests.projections.test_properties import event_logs

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)
DEFAULT = {"group_by": "first_channel", "now": NOW}
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_conversion_time__maintained_over_a_demo_log_equals_the_definition(seed):
    assert_maintained_like_defined(ConversionTime(), conversion_time_view, DEFAULT, demo_log(300, seed), seed=seed)


@pytest.mark.parametrize("now", ["2023-06-01T00:00:00Z", "2024-03-15T13:07:11.123457Z", "2031-01-01T00:00:00Z"])
def test_conversion_time__prospects_ages_at_any_now_equal_the_definition(now):
    """Before, among and long after the demo's touches: ages clamped at 0, in every bucket."""
    params = {**DEFAULT, "now": now}

    assert_maintained_like_defined(ConversionTime(), conversion_time_view, params, demo_log(200, 7), seed=7)


def test_conversion_time__maintained_by_first_campaign_equals_the_definition():
    params = {"group_by": "first_campaign", "now": NOW}

    assert_maintained_like_defined(ConversionTime("first_campaign"), conversion_time_view, params, demo_log(200, 8))


def test_conversion_time__maintained_by_first_source_equals_the_definition():
    params = {"group_by": "first_source", "now": NOW}

    assert_maintained_like_defined(ConversionTime("first_source"), conversion_time_view, params, demo_log(200, 9))


@PROPERTY
@given(events=event_logs(max_size=24), now_minutes=st.integers(0, 120 * 24 * 60))
def test_conversion_time__maintained_over_merges_and_orders_equals_the_definition(events, now_minutes):
    params = {**DEFAULT, "now": datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=now_minutes)}

    assert_maintained_like_defined(ConversionTime(), conversion_time_view, params, spec_log(events), batches=6)


def test_conversion_time__an_empty_population_has_no_conversions_and_no_prospects():
    assert_maintained_like_defined(ConversionTime(), conversion_time_view, DEFAULT, [])


def test_conversion_time__a_prospect_that_converts_leaves_the_prospects():
    log = spec_log([
        touch("ads", at="2024-01-01", customer="c1"),
        touch("email", at="2024-01-02T06:00", customer="c2"),
        order("o1", "10", at="2024-01-09", customer="c1"),
        merge("c2", "c1", at="2024-01-10"),  # c1's group now starts with ads still; c2's prospect is gone
        order("o2", "10", at="2024-01-11", customer="c3"),  # a customer without a touch
    ])

    assert_maintained_like_defined(ConversionTime(), conversion_time_view, DEFAULT, log, batches=len(log))


def test_conversion_time__other_parameters_are_left_to_the_definition():
    aggregate = ConversionTime()

    assert aggregate.answers({**DEFAULT, "now": "2024-01-01"})
    assert not aggregate.answers({**DEFAULT, "group_by": "first_campaign"})
    assert not aggregate.answers({**DEFAULT, "now": "yesterday"})
    assert not aggregate.answers({"group_by": "first_channel"})


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(0, 1e6, allow_nan=False) | st.integers(0, 10**12).map(lambda us: us / 86_400_000_000)),
    groups=st.integers(1, 4),
)
def test_exact_sums__equal_math_fsum_per_group(values, groups):
    codes = np.arange(len(values), dtype=np.int64) % groups
    array = np.array(values, dtype=np.float64)

    units, exponent = _exact_sums(array, codes, groups) if values else ([0] * groups, 0)

    assert [_to_float(units[g], exponent) for g in range(groups)] == [
        math.fsum(values[g::groups]) for g in range(groups)
    ]


def test_conversion_time__the_live_views_precomputed_parameters_are_rendered_by_the_registered_aggregate():
    spec = VIEW_SPECS["conversion_time"]

    for params in spec.precomputed:
        merged = {**dict(spec.key(params)[1]), "now": NOW}
        assert isinstance(MaintainedViews.default().find("conversion_time", merged), ConversionTime)


@settings(max_examples=300, deadline=None)
@given(
    ages_us=st.lists(st.integers(0, 20 * 365 * _DAY_US) | st.integers(0, 10_000), min_size=1, max_size=40),
    now=st.integers(10**15, 2 * 10**15),
)
def test_decided_total__gives_the_mean_fsum_of_the_ages_gives(ages_us, now):
    times = [now - age for age in ages_us]
    ages = [(now - time) / _DAY_US for time in times]

    total = _decided_total(len(times), now, sum(times), max(times))

    assert total is not None
    assert round(total / len(times), 3) == round(math.fsum(ages) / len(ages), 3)


def test_decided_total__leaves_a_mean_on_a_rounding_boundary_and_clipped_ages_to_the_exact_pass():
    now = 10**15
    half_a_thousandth_of_a_day = _DAY_US // 2000  # the exact age 0.0005: round() needs the float sum's last bit

    assert _decided_total(1, now, now - half_a_thousandth_of_a_day, now - half_a_thousandth_of_a_day) is None
    assert _decided_total(2, now, 2 * now, now + 1) is None  # a first touch after now: its age is clipped at 0


def test_conversion_time__renders_the_default_document_without_reading_the_prospects_column(monkeypatch):
    """Given a demo population, now after every touch: the means come from the kept sums (the
    column's O(prospects) pass would fail here) and equal the definition's."""
    def refused(self, now):
        raise AssertionError("the column's pass was not needed")

    monkeypatch.setattr(_TimesColumn, "age_totals", refused)

    assert_maintained_like_defined(ConversionTime(), conversion_time_view, {**DEFAULT, "now": "2031-01-01T00:00:00Z"},
                                   demo_log(200, 5), seed=5)
