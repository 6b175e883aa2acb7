"""The maintained attribution renders what its definition computes, for every model."""

import pytest
from hypothesis import HealthCheck, given, settings

from projections.aggregates import attribution as maintained_attribution
from projections.aggregates.attribution import MultiTouchAttribution
from projections.attribution import MODELS
from projections.multi_touch import attribution_view
from tests.projections.aggregates.maintained import assert_maintained_like_defined, demo_log, spec_log
from tests.projections.spec import link, merge, order, touch
from tests.projections.test_properties import event_logs

DEFAULTS = {"lookback_days": None, "start": None, "end": None, "group_by": "channel", "half_life_days": 7.0}
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def params(model: str) -> dict:
    return {"model": model, **DEFAULTS}


def assert_every_model(log, *, seed=0, batches=8):
    for model in MODELS:
        assert_maintained_like_defined(
            MultiTouchAttribution(), attribution_view, params(model), log, seed=seed, batches=batches
        )


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_attribution__maintained_over_a_demo_log_equals_the_definition(model, seed):
    log = demo_log(300, seed)

    assert_maintained_like_defined(MultiTouchAttribution(), attribution_view, params(model), log, seed=seed)


@PROPERTY
@given(events=event_logs(max_size=24))
def test_attribution__maintained_over_merges_orders_and_touches_equals_the_definition(events):
    assert_every_model(spec_log(events), batches=6)


def test_attribution__an_empty_population_credits_nothing():
    assert_every_model([])


def test_attribution__prospects_alone_give_labels_but_no_credit():
    log = spec_log([touch("ads", at="2024-01-01", anon="a1"), touch("email", at="2024-01-02", anon="a2")])

    assert_every_model(log, batches=2)


def test_attribution__a_conversion_without_a_touch_is_unattributed():
    log = spec_log([
        order("o1", "10", at="2024-01-01", customer="c1"),
        touch("ads", at="2024-01-02", customer="c2"),
        order("o2", "25.5", at="2024-01-03", customer="c2"),
    ])

    assert_every_model(log, batches=len(log))


def test_attribution__an_earlier_order_takes_a_channel_out_of_every_path():
    log = spec_log([
        touch("ads", at="2024-01-05", customer="c1"),
        touch("email", at="2024-01-01", customer="c2"),
        order("o2", "20", at="2024-01-02", customer="c2"),
        order("o1", "10", at="2024-01-03", customer="c1"),
    ])

    assert_every_model(log, batches=len(log))


def test_attribution__a_merged_away_customer_leaves_its_path():
    log = spec_log([
        touch("ads", at="2024-01-01", anon="a1"),
        touch("email", at="2024-01-02", customer="c1"),
        order("o1", "10", at="2024-01-03", customer="c1"),
        touch("store", at="2024-01-01", customer="c2"),
        order("o2", "30", at="2024-01-04", customer="c2"),
        link("a1", "c1", at="2024-01-05"),
        merge("c2", "c1", at="2024-01-06"),
    ])

    assert_every_model(log, batches=len(log))


def test_attribution__shapley_pools_labels_beyond_its_exact_limit():
    channels = [f"ch{n:02d}" for n in range(23)]
    events = [touch(channel, at="2024-01-01", customer=f"c{n}") for n, channel in enumerate(channels)]
    events += [touch(channels[n + 1], at="2024-01-02", customer=f"c{n}") for n in range(0, 22, 2)]
    events += [order(f"o{n}", "10", at="2024-01-03", customer=f"c{n}") for n in range(0, 23, 3)]

    assert_maintained_like_defined(MultiTouchAttribution(), attribution_view, params("shapley"), spec_log(events))


def test_attribution__time_decay_credited_in_small_batches_equals_the_definition(monkeypatch):
    monkeypatch.setattr(maintained_attribution, "_DECAY_BATCH", 3)

    log = demo_log(200, 6)

    assert_maintained_like_defined(MultiTouchAttribution(), attribution_view, params("time_decay"), log, seed=6)


def test_attribution__answers_every_model_with_the_default_parameters_only():
    aggregate = MultiTouchAttribution()

    assert all(aggregate.answers(params(model)) for model in MODELS)
    assert aggregate.answers({"model": "markov"})
    assert aggregate.answers({**params("linear"), "half_life_days": 3})
    assert not aggregate.answers({**params("time_decay"), "half_life_days": 3})
    assert not aggregate.answers({**params("linear"), "half_life_days": -1})
    assert not aggregate.answers({**params("linear"), "lookback_days": 30})
    assert not aggregate.answers({**params("linear"), "start": "2024-01-01"})
    assert not aggregate.answers({**params("linear"), "group_by": "campaign"})
    assert not aggregate.answers({**params("linear"), "model": "u_shaped"})
    assert not aggregate.answers({**params("linear"), "now": "2025-01-01"})
