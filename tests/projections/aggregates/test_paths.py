"""The maintained top paths render what their definition computes."""

import pytest
from hypothesis import HealthCheck, given, settings

from projections.aggregates.paths import TopPaths
from projections.top_paths import paths_view
from tests.projections.aggregates.maintained import assert_maintained_like_defined, demo_log, spec_log
from tests.projections.spec import merge, order, touch
from tests.projections.test_properties import event_logs

DEFAULTS = {
    "top": 20, "collapse_repeats": True, "lookback_days": None, "group_by": "channel", "start": None, "end": None,
}
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_paths__maintained_over_a_demo_log_equals_the_definition(seed):
    assert_maintained_like_defined(TopPaths(), paths_view, DEFAULTS, demo_log(300, seed), seed=seed)


@pytest.mark.parametrize("top", [1, 3, 1000])
def test_paths__any_top_shows_the_first_rows_of_the_ranking(top):
    assert_maintained_like_defined(TopPaths(), paths_view, {**DEFAULTS, "top": top}, demo_log(200, 4), seed=4)


@PROPERTY
@given(events=event_logs(max_size=24))
def test_paths__maintained_over_merges_orders_and_touches_equals_the_definition(events):
    assert_maintained_like_defined(TopPaths(), paths_view, DEFAULTS, spec_log(events), batches=6)


def test_paths__an_empty_population_has_no_paths():
    assert_maintained_like_defined(TopPaths(), paths_view, DEFAULTS, [])


def test_paths__equal_counts_rank_by_value_then_sequence():
    log = spec_log([
        touch("email", at="2024-01-01", customer="c1"),
        order("o1", "10", at="2024-01-02", customer="c1"),
        touch("ads", at="2024-01-01", customer="c2"),
        order("o2", "10", at="2024-01-02", customer="c2"),
        touch("store", at="2024-01-01", customer="c3"),
        order("o3", "25.5", at="2024-01-02", customer="c3"),
        touch("ads", at="2024-01-01", anon="a1"),
        touch("email", at="2024-01-01", anon="a2"),
    ])

    assert_maintained_like_defined(TopPaths(), paths_view, {**DEFAULTS, "top": 2}, log, batches=len(log))


def test_paths__a_merged_away_customer_leaves_its_path_and_the_ranking():
    log = spec_log([
        touch("ads", at="2024-01-01", customer="c1"),
        touch("ads", at="2024-01-02", customer="c1"),
        order("o1", "10", at="2024-01-03", customer="c1"),
        touch("email", at="2024-01-01", customer="c2"),
        order("o2", "20", at="2024-01-04", customer="c2"),
        merge("c2", "c1", at="2024-01-05"),
    ])

    assert_maintained_like_defined(TopPaths(), paths_view, DEFAULTS, log, batches=len(log))


def test_paths__answers_collapsed_channel_paths_of_the_whole_log_only():
    aggregate = TopPaths()

    assert aggregate.answers(DEFAULTS)
    assert aggregate.answers({})
    assert aggregate.answers({**DEFAULTS, "top": "5"})
    assert not aggregate.answers({**DEFAULTS, "top": 0})
    assert not aggregate.answers({**DEFAULTS, "collapse_repeats": False})
    assert not aggregate.answers({**DEFAULTS, "collapse_repeats": "maybe"})
    assert not aggregate.answers({**DEFAULTS, "lookback_days": 30})
    assert not aggregate.answers({**DEFAULTS, "end": "2024-06-01"})
    assert not aggregate.answers({**DEFAULTS, "group_by": "campaign"})
    assert not aggregate.answers({**DEFAULTS, "now": "2025-01-01"})
