"""The Markov model on chains small enough to solve by hand."""

from __future__ import annotations

import pytest
from tests.projections.attribution.attribution_spec import converted, given, prospect, then_credits

from projections.attribution import markov_chain


def tiny_chain():
    # start->a 2/3, start->b 1/3; a->b 1/2, a->null 1/2; b->conversion 1.
    # P(conv) = 2/3*1/2 + 1/3 = 2/3; without a: 1/3 (effect 1/2); without b: 0 (effect 1).
    return given(converted("a", "b", value=30.0), prospect("a"), converted("b", value=60.0))


def test_markov__tiny_chain_credits_follow_removal_effects():
    result = tiny_chain().when("markov")
    then_credits(result, {"a": (2 / 3, 30.0), "b": (4 / 3, 60.0)})


def test_markov__tiny_chain_transitions_conversion_probability_and_removal_effects():
    chain = markov_chain(tiny_chain().paths)
    assert chain.transitions == pytest.approx(
        {
            ("(start)", "a"): 2 / 3,
            ("(start)", "b"): 1 / 3,
            ("a", "b"): 1 / 2,
            ("a", "(null)"): 1 / 2,
            ("b", "(conversion)"): 1.0,
        },
        rel=1e-12,
    )
    assert chain.conversion_probability == pytest.approx(2 / 3, rel=1e-12)
    assert chain.removal_effects == pytest.approx({"a": 0.5, "b": 1.0}, rel=1e-12)


def test_markov__loop_between_channels_is_solved_exactly():
    # a>b>a converts, b drops: x_a = 1/2 + x_b/2, x_b = x_a/2, so P(conv) = 1/2;
    # without a nothing converts (effect 1); without b only start>a>conv (1/4, effect 1/2).
    result = given(converted("a", "b", "a", value=9.0), prospect("b")).when("markov")
    then_credits(result, {"a": (2 / 3, 6.0), "b": (1 / 3, 3.0)})


def test_markov__consecutive_repeats_are_collapsed():
    repeated = given(converted("a", "a", "b", value=30.0), prospect("a", "a"), converted("b", "b", value=60.0))
    then_credits(repeated.when("markov"), tiny_chain().when("markov").credits)


def test_markov__conversion_probability_equals_observed_conversion_rate():
    paths = [converted("a", "b", "a"), converted("c"), prospect("b", "c", "b"), prospect("a"), prospect("c", "a")]
    assert markov_chain(paths).conversion_probability == pytest.approx(2 / 5, rel=1e-12)


def test_markov__channel_seen_only_on_non_converting_paths_gets_no_credit():
    result = given(converted("search", value=10.0), prospect("display"), prospect("display", "display")).when("markov")
    then_credits(result, {"display": (0.0, 0.0), "search": (1.0, 10.0)})


def test_markov__non_converting_paths_enter_the_chain():
    # Without prospects: P(conv) = 1, without a 1/2, without b 0: effects 1/2 and 1.
    converting = (converted("a", "b", value=3.0), converted("b", value=3.0))
    then_credits(given(*converting).when("markov"), {"a": (2 / 3, 2.0), "b": (4 / 3, 4.0)})
    # Two prospects on b: start->b 3/4, b converts 1/2; P(conv) = 1/2, without a 3/8:
    # effects 1/4 and 1, so b's share rises from 2/3 to 4/5.
    with_prospects = given(*converting, prospect("b"), prospect("b")).when("markov")
    then_credits(with_prospects, {"a": (0.4, 1.2), "b": (1.6, 4.8)})


def test_markov__empty_path_is_unattributed_and_outside_the_chain():
    result = given(converted(value=5.0), converted("a", value=7.0), prospect("a")).when("markov")
    assert (result.unattributed_conversions, result.unattributed_value) == (1, 5.0)
    then_credits(result, {"a": (1.0, 7.0)})


def test_markov__no_conversion_gives_zero_credits_without_error():
    result = given(prospect("a", "b"), prospect("b")).when("markov")
    assert result.conversions == 0
    then_credits(result, {"a": (0.0, 0.0), "b": (0.0, 0.0)})
