"""First contact in a window, answered from the groups' columns, renders what its definition computes."""

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.aggregates import MaintainedViews
from projections.aggregates.first_contact import FirstContact
from projections.aggregates.first_contact_queries import FirstContactQueries
from projections.first_contact import first_contact_view
from tests.projections.aggregates.maintained import assert_maintained_like_defined, demo_log, spec_log
from tests.projections.spec import order, touch
from tests.projections.test_properties import START, event_logs

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_like_defined(params, log, *, seed=0, batches=8):
    assert_maintained_like_defined(FirstContactQueries(), first_contact_view, params, log, seed=seed, batches=batches)


@pytest.mark.parametrize("group_by", ["channel", "campaign", "source"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_first_contact_queries__a_window_over_a_demo_log_equals_the_definition(group_by, seed):
    params = {"group_by": group_by, "start": "2023-01-01", "end": "2024-07-01"}

    assert_like_defined(params, demo_log(300, seed), seed=seed)


@pytest.mark.parametrize("window", [{"start": "2024-01-01"}, {"end": "2023-06-01"}])
def test_first_contact_queries__a_window_open_on_one_side_equals_the_definition(window):
    assert_like_defined({"group_by": "channel", **window}, demo_log(300, 4), seed=4)


@PROPERTY
@given(
    events=event_logs(max_size=24),
    group_by=st.sampled_from(["channel", "campaign", "source"]),
    window=st.tuples(st.integers(-5, 95), st.integers(1, 100)),
)
def test_first_contact_queries__any_window_over_merges_orders_and_refunds_equals_the_definition(
    events, group_by, window
):
    start = START + timedelta(days=window[0])
    params = {"group_by": group_by, "start": start, "end": start + timedelta(days=window[1])}

    assert_like_defined(params, spec_log(events), batches=6)


def test_first_contact_queries__an_empty_population_reaches_no_one():
    assert_like_defined({"group_by": "channel", "start": "2024-01-01"}, [])


def test_first_contact_queries__a_window_before_every_first_touch_has_no_rows():
    log = spec_log([touch("ads", at="2024-03-01", customer="c1"), order("o1", "10", at="2024-03-02", customer="c1")])

    assert_like_defined({"group_by": "campaign", "end": "2024-02-01"}, log, batches=2)


def test_first_contact_queries__answers_the_windows_the_default_aggregate_does_not():
    views = MaintainedViews([FirstContact(), FirstContactQueries()])

    assert type(views.find("first_contact", {"group_by": "campaign", "start": None, "end": None})) is FirstContact
    assert type(views.find("first_contact", {"group_by": "campaign", "start": "2024-01-01"})) is FirstContactQueries


@pytest.mark.parametrize(
    "params",
    [{"group_by": "country"}, {"start": "2024-02-01", "end": "2024-01-01"}, {"start": "yesterday"}, {"now": None}],
)
def test_first_contact_queries__leaves_parameters_the_definition_refuses_to_it(params):
    assert not FirstContactQueries().answers(params)
