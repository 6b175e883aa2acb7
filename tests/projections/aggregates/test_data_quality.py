"""The maintained data quality view renders what its definition computes."""

import pytest
from hypothesis import HealthCheck, given, settings

from application.live_views import VIEW_SPECS
from projections.aggregates import MaintainedViews
from projections.aggregates.data_quality import DataQuality
from projections.data_quality import data_quality_view
from tests.projections.aggregates.maintained import assert_maintained_like_defined, demo_log, spec_log
from tests.projections.spec import link, merge, order, refund, touch
from tests.projections.test_properties import event_logs

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_data_quality__maintained_over_a_demo_log_equals_the_definition(seed):
    assert_maintained_like_defined(DataQuality(), data_quality_view, {"limit": 100}, demo_log(300, seed), seed=seed)


@PROPERTY
@given(events=event_logs(max_size=30))
def test_data_quality__maintained_over_merges_orders_and_refunds_equals_the_definition(events):
    for limit in (1, 100):
        assert_maintained_like_defined(DataQuality(), data_quality_view, {"limit": limit}, spec_log(events), batches=6)


def test_data_quality__an_empty_population_reports_nothing():
    assert_maintained_like_defined(DataQuality(), data_quality_view, {"limit": 100}, [])


def test_data_quality__findings_leave_when_their_cause_goes_away():
    log = spec_log([
        refund("o1", "30", at="2024-01-02", customer="c1"),  # unknown order: reported
        order("o1", "20", at="2024-01-01", customer="c1"),  # now known, and over-refunded
        order("o1", "20", at="2024-01-03", customer="c1"),  # a duplicate id
        order("o2", "10", at="2024-01-01", anon="a1", currency="USD"),  # no customer id, mixed currencies
        touch("ads", at="2023-12-01", anon="a1"),
        link("a1", "c1", at="2024-01-04"),  # the anonymous order joins a customer
        merge("c2", "c1", at="2024-01-05"),
        merge("c1", "c2", at="2024-01-06"),  # a cycle
    ])

    assert_maintained_like_defined(DataQuality(), data_quality_view, {"limit": 100}, log, batches=len(log))


def test_data_quality__a_limit_shows_the_first_rows_in_root_order():
    log = spec_log([refund(f"o{n}", "1", at=f"2024-01-0{n}", customer=f"c{9 - n}") for n in range(1, 8)])

    assert_maintained_like_defined(DataQuality(), data_quality_view, {"limit": 2}, log, batches=4)


def test_data_quality__a_bad_limit_is_left_to_the_definition():
    assert DataQuality().answers({"limit": "7"})
    assert not DataQuality().answers({"limit": 0}) and not DataQuality().answers({"limit": True})


def test_data_quality__the_live_views_precomputed_parameters_are_rendered_by_the_registered_aggregate():
    spec = VIEW_SPECS["data_quality"]

    for params in spec.precomputed:
        merged = {**dict(spec.key(params)[1])}
        assert isinstance(MaintainedViews.default().find("data_quality", merged), DataQuality)
