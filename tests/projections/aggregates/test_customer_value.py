"""The maintained top customers and prospects render what their definitions compute."""

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings

from events.logged import LoggedEvent
from projections.aggregates.customer_value import Prospects, TopCustomers
from projections.customer_value import prospects_view, top_customers_view
from tests.projections.aggregates.maintained import assert_maintained_like_defined, demo_log, spec_log
from tests.projections.spec import merge, order, refund, touch
from tests.projections.test_properties import event_logs

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)
TOP_CUSTOMERS = {"now": NOW, "by": "revenue", "limit": 20}
PROSPECTS = {"now": NOW, "limit": 100, "channel": None}
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_top_customers__maintained_over_a_demo_log_equals_the_definition(seed):
    assert_maintained_like_defined(TopCustomers(), top_customers_view, TOP_CUSTOMERS, demo_log(300, seed), seed=seed)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_prospects__maintained_over_a_demo_log_equals_the_definition(seed):
    assert_maintained_like_defined(Prospects(), prospects_view, PROSPECTS, demo_log(300, seed), seed=seed)


def test_top_customers__every_customer_shown_with_a_limit_beyond_the_population():
    params = {**TOP_CUSTOMERS, "limit": 1000}

    assert_maintained_like_defined(TopCustomers(), top_customers_view, params, demo_log(200, 4), seed=4)


def test_prospects__a_small_limit_shows_the_latest_only():
    params = {**PROSPECTS, "limit": 3}

    assert_maintained_like_defined(Prospects(), prospects_view, params, demo_log(200, 5), seed=5)


@PROPERTY
@given(events=event_logs(max_size=24))
def test_top_customers__maintained_over_merges_orders_and_refunds_equals_the_definition(events):
    assert_maintained_like_defined(TopCustomers(), top_customers_view, TOP_CUSTOMERS, spec_log(events), batches=6)


@PROPERTY
@given(events=event_logs(max_size=24))
def test_prospects__maintained_over_merges_orders_and_touches_equals_the_definition(events):
    assert_maintained_like_defined(Prospects(), prospects_view, PROSPECTS, spec_log(events), batches=6)


def test_top_customers__an_empty_population_has_no_customers():
    assert_maintained_like_defined(TopCustomers(), top_customers_view, TOP_CUSTOMERS, [])


def test_prospects__an_empty_population_has_no_prospects():
    assert_maintained_like_defined(Prospects(), prospects_view, PROSPECTS, [])


def test_top_customers__a_merged_away_customer_leaves_the_ranking_and_the_scores():
    log = spec_log([
        order("o1", "10", at="2024-01-01", customer="c1"),
        order("o2", "20", at="2024-01-02", customer="c2"),
        order("o3", "30", at="2024-01-03", customer="c3"),
        merge("c2", "c1", at="2024-01-04"),
        refund("o3", "25", at="2024-01-05", customer="c3"),
    ])

    assert_maintained_like_defined(TopCustomers(), top_customers_view, TOP_CUSTOMERS, log, batches=len(log))


def test_top_customers__equal_values_share_their_quintile_scores():
    log = spec_log([order(f"o{n}", "10", at="2024-03-01", customer=f"c{n}") for n in range(7)])

    assert_maintained_like_defined(TopCustomers(), top_customers_view, TOP_CUSTOMERS, log, batches=3)


def test_prospects__a_prospect_who_orders_leaves_the_prospects():
    log = spec_log([
        touch("ads", at="2024-01-01", anon="a1"),
        touch("email", at="2024-01-02", anon="a2"),
        order("o1", "10", at="2024-01-03", anon="a1"),
        touch("ads", at="2024-01-04", anon="a1"),
    ])

    assert_maintained_like_defined(Prospects(), prospects_view, PROSPECTS, log, batches=len(log))


def test_prospects__equal_last_touches_keep_root_order():
    touches = [touch("ads", at="2024-01-01", anon=anon) for anon in ("a3", "a1", "a2", "a4")]
    same_position = [LoggedEvent(10, entry.recorded_at, entry.stream, entry.event) for entry in spec_log(touches)]

    assert_maintained_like_defined(Prospects(), prospects_view, {**PROSPECTS, "limit": 3}, same_position, batches=2)


def test_top_customers__answers_only_the_revenue_ranking():
    aggregate = TopCustomers()

    assert aggregate.answers(TOP_CUSTOMERS)
    assert not aggregate.answers({**TOP_CUSTOMERS, "by": "orders"})
    assert not aggregate.answers({**TOP_CUSTOMERS, "by": "rfm"})
    assert not aggregate.answers({**TOP_CUSTOMERS, "limit": 0})
    assert not aggregate.answers({"by": "revenue", "limit": 20})


def test_prospects__answers_every_channel_only():
    aggregate = Prospects()

    assert aggregate.answers(PROSPECTS)
    assert not aggregate.answers({**PROSPECTS, "channel": "ads"})
    assert not aggregate.answers({**PROSPECTS, "limit": "many"})
    assert not aggregate.answers({**PROSPECTS, "now": datetime(2025, 1, 1)})
