"""The maintained funnel renders what its definition computes."""

import pytest
from hypothesis import HealthCheck, given, settings

from application.live_views import VIEW_SPECS
from projections.aggregates import MaintainedViews
from projections.aggregates.funnel import Funnel
from projections.customer_value import funnel_view
from tests.projections.aggregates.maintained import assert_maintained_like_defined, demo_log, spec_log
from tests.projections.spec import consent, link, order, touch
from tests.projections.test_properties import event_logs

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_funnel__maintained_over_a_demo_log_equals_the_definition(seed):
    assert_maintained_like_defined(Funnel(), funnel_view, {}, demo_log(300, seed), seed=seed)


@PROPERTY
@given(events=event_logs(max_size=24))
def test_funnel__maintained_over_merges_orders_and_consents_equals_the_definition(events):
    assert_maintained_like_defined(Funnel(), funnel_view, {}, spec_log(events), batches=6)


def test_funnel__an_empty_population_has_no_groups():
    assert_maintained_like_defined(Funnel(), funnel_view, {}, [])


def test_funnel__groups_without_touches_or_orders_count_as_groups_only():
    log = spec_log([
        consent("marketing", True, at="2024-01-01", customer="c1"),
        touch("ads", at="2024-01-02", anon="a1"),
        link("a1", "c1", at="2024-01-03"),  # the anonymous group joins c1's
        order("o1", "10", at="2024-01-04", customer="c2"),
    ])

    assert_maintained_like_defined(Funnel(), funnel_view, {}, log, batches=len(log))


def test_funnel__answers_only_its_one_document():
    assert Funnel().answers({}) and not Funnel().answers({"limit": 3})


def test_funnel__the_live_views_precomputed_parameters_are_rendered_by_the_registered_aggregate():
    spec = VIEW_SPECS["funnel"]

    for params in spec.precomputed:
        merged = {**dict(spec.key(params)[1])}
        assert isinstance(MaintainedViews.default().find("funnel", merged), Funnel)
