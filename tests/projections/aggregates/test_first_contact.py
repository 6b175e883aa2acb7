"""The maintained first contact renders what its definition computes, by channel, by campaign and by source."""

import pytest
from hypothesis import HealthCheck, given, settings

from application.live_views import VIEW_SPECS
from projections.aggregates import MaintainedViews
from projections.aggregates.first_contact import FirstContact
from projections.first_contact import first_contact_view
from tests.projections.aggregates.maintained import assert_maintained_like_defined, demo_log, spec_log
from tests.projections.spec import merge, order, refund, touch
from tests.projections.test_properties import event_logs

BY_CHANNEL = {"group_by": "channel", "start": None, "end": None}
BY_CAMPAIGN = {"group_by": "campaign", "start": None, "end": None}
BY_SOURCE = {"group_by": "source", "start": None, "end": None}
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("params", [BY_CHANNEL, BY_CAMPAIGN, BY_SOURCE], ids=["channel", "campaign", "source"])
def test_first_contact__maintained_over_a_demo_log_equals_the_definition(params, seed):
    assert_maintained_like_defined(FirstContact(), first_contact_view, params, demo_log(300, seed), seed=seed)


@PROPERTY
@given(events=event_logs(max_size=24))
def test_first_contact__maintained_over_merges_orders_and_refunds_equals_the_definition(events):
    for params in (BY_CHANNEL, BY_CAMPAIGN, BY_SOURCE):
        assert_maintained_like_defined(FirstContact(), first_contact_view, params, spec_log(events), batches=6)


def test_first_contact__an_empty_population_reaches_no_one():
    assert_maintained_like_defined(FirstContact(), first_contact_view, BY_CHANNEL, [])


def test_first_contact__a_label_no_group_starts_with_any_more_leaves_the_rows():
    log = spec_log([
        touch("ads", at="2024-01-02", customer="c1", campaign="spring", source="google"),
        touch("email", at="2024-01-03", customer="c2"),
        merge("c1", "c2", at="2024-01-04"),  # c2's group now starts with ads
        touch("store", at="2024-01-01", customer="c2"),  # and then with store
        order("o1", "20", at="2024-01-05", customer="c2"),
        refund("o1", "5", at="2024-01-06", customer="c2"),
    ])

    for params in (BY_CHANNEL, BY_CAMPAIGN, BY_SOURCE):
        assert_maintained_like_defined(FirstContact(), first_contact_view, params, log, batches=len(log))


def test_first_contact__a_window_is_left_to_the_definition():
    aggregate = FirstContact()

    assert aggregate.answers(BY_CAMPAIGN)
    assert not aggregate.answers({**BY_CHANNEL, "start": "2024-01-01"})
    assert not aggregate.answers({**BY_CHANNEL, "end": "2024-01-01"})
    assert not aggregate.answers({"group_by": "country"})


def test_first_contact__the_live_views_precomputed_parameters_are_rendered_by_the_registered_aggregate():
    spec = VIEW_SPECS["first_contact"]

    for params in spec.precomputed:
        merged = {**dict(spec.key(params)[1])}
        assert isinstance(MaintainedViews.default().find("first_contact", merged), FirstContact)
