"""Attribution with parameters, answered from the paths' columns, renders what its definition computes."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.aggregates import MaintainedViews
from projections.aggregates.attribution import MultiTouchAttribution
from projections.aggregates.attribution_queries import AttributionQueries
from projections.attribution import MODELS
from projections.multi_touch import attribution_view
from projections.population import Population, evolve
from tests.projections.aggregates.maintained import assert_maintained_like_defined, demo_log, spec_log
from tests.projections.spec import link, order, touch
from tests.projections.test_properties import START, event_logs

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
A_YEAR = {"start": "2024-01-01", "end": "2025-01-01"}


def query(model, **params):
    defaults = {"lookback_days": None, "start": None, "end": None, "group_by": "channel", "half_life_days": 7.0}
    return {**defaults, "model": model, **params}


def assert_like_defined(params, log, *, compact_above=65_536, paths_a_chunk=65_536, seed=0, batches=8):
    assert_maintained_like_defined(
        AttributionQueries(compact_above=compact_above, paths_a_chunk=paths_a_chunk), attribution_view, params, log,
        seed=seed, batches=batches,
    )


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_attribution_queries__a_lookback_in_a_year_over_a_demo_log_equals_the_definition(model, seed):
    assert_like_defined(query(model, lookback_days=30, **A_YEAR), demo_log(300, seed), seed=seed)


@pytest.mark.parametrize("model", MODELS)
def test_attribution_queries__campaigns_with_a_half_life_over_a_demo_log_equal_the_definition(model):
    params = query(model, group_by="campaign", half_life_days=2.5, lookback_days=10.25, start="2023-06-01")

    assert_like_defined(params, demo_log(300, 4), seed=4)


@pytest.mark.parametrize("model", MODELS)
def test_attribution_queries__sources_in_a_window_over_a_demo_log_equal_the_definition(model):
    params = query(model, group_by="source", lookback_days=20, start="2023-03-01", end="2024-09-01")

    assert_like_defined(params, demo_log(300, 6), seed=6)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("paths_a_chunk", [1, 7])
def test_attribution_queries__a_lookback_read_a_few_paths_at_a_time_equals_the_definition(model, paths_a_chunk):
    params = query(model, lookback_days=30, **A_YEAR)

    assert_like_defined(params, demo_log(300, 2), paths_a_chunk=paths_a_chunk, seed=2)


@pytest.mark.parametrize("model", ["linear", "time_decay", "markov"])
def test_attribution_queries__compacted_after_every_change_still_equal_the_definition(model):
    params = query(model, group_by="campaign", lookback_days=45, end="2024-06-01")

    assert_like_defined(params, demo_log(60, 5), compact_above=0, batches=60)


@PROPERTY
@given(
    events=event_logs(max_size=24),
    model=st.sampled_from(MODELS),
    group_by=st.sampled_from(["channel", "campaign", "source"]),
    lookback_days=st.one_of(st.none(), st.floats(0.001, 120)),
    half_life_days=st.floats(0.01, 30),
    window=st.tuples(st.integers(-5, 95), st.integers(1, 100)),
)
def test_attribution_queries__any_window_and_lookback_over_merges_orders_and_touches_equal_the_definition(
    events, model, group_by, lookback_days, half_life_days, window
):
    start = START + timedelta(days=window[0])
    params = query(
        model,
        group_by=group_by,
        lookback_days=lookback_days,
        half_life_days=half_life_days,
        start=start,
        end=start + timedelta(days=window[1]),
    )

    assert_like_defined(params, spec_log(events), compact_above=0, batches=6)


def test_attribution_queries__an_empty_population_credits_nothing():
    for model in MODELS:
        assert_like_defined(query(model, lookback_days=7, **A_YEAR), [])


def test_attribution_queries__touches_older_than_the_lookback_leave_a_conversion_unattributed():
    log = spec_log([
        touch("ads", at="2024-01-01", customer="c1"),
        touch("email", at="2024-01-20", customer="c1"),
        order("o1", "10", at="2024-01-21", customer="c1"),
        touch("store", at="2024-01-01", customer="c2"),
        order("o2", "30", at="2024-02-01", customer="c2"),
        touch("ads", at="2024-02-01", anon="a1"),
    ])

    for model in MODELS:
        assert_like_defined(query(model, lookback_days=5), log, batches=len(log))


def test_attribution_queries__groups_with_identical_rows_change_one_at_a_time():
    log = spec_log([
        order("o1", "10", at="2024-01-05", customer="c1"),
        order("o2", "10", at="2024-01-05", customer="c2"),
        order("o3", "10", at="2024-01-05", customer="c3"),
        link("a1", "c2", at="2024-01-06"),
        touch("ads", at="2024-01-01", anon="a1"),
    ])

    for model in MODELS:
        assert_like_defined(query(model, lookback_days=30), log, batches=len(log))


def test_attribution_queries__a_window_without_conversions_gives_empty_rows():
    log = spec_log([touch("ads", at="2024-01-01", customer="c1"), order("o1", "10", at="2024-01-02", customer="c1")])

    for model in MODELS:
        assert_like_defined(query(model, start="2025-01-01", end="2025-02-01"), log, batches=2)


def test_attribution_queries__a_lookback_reaching_before_year_one_fails_like_the_definition():
    aggregate = AttributionQueries()
    population = Population()
    population.summaries.maintain(MaintainedViews([aggregate]))
    log = spec_log([touch("ads", at="2024-01-01", customer="c1"), order("o1", "10", at="2024-01-02", customer="c1")])
    for entry in log:
        evolve(population, entry)
    population.summaries.refresh()
    params = query("linear", lookback_days=800_000)

    with pytest.raises(OverflowError):
        attribution_view(population, **params)
    with pytest.raises(OverflowError):
        aggregate.document(population, params)


def test_attribution_queries__answers_parameters_the_default_aggregate_does_not():
    views = MaintainedViews([MultiTouchAttribution(), AttributionQueries()])

    assert type(views.find("attribution", query("markov"))) is MultiTouchAttribution
    assert type(views.find("attribution", query("markov", lookback_days=30, **A_YEAR))) is AttributionQueries
    assert type(views.find("attribution", query("linear", group_by="campaign"))) is AttributionQueries
    assert type(views.find("attribution", query("time_decay", half_life_days="3"))) is AttributionQueries


@pytest.mark.parametrize(
    "params",
    [
        query("nonesuch"),
        query("linear", lookback_days=-1),
        query("linear", group_by="country"),
        query("linear", start="2024-02-01", end="2024-01-01"),
        query("linear", lookback_days=1e12),
        {**query("linear"), "as_of": datetime(2024, 1, 1, tzinfo=timezone.utc)},
    ],
)
def test_attribution_queries__leaves_parameters_the_definition_refuses_to_it(params):
    assert not AttributionQueries().answers(params)
