"""first_touch, last_touch, linear, position_based and time_decay on small hand-computed journeys."""

from __future__ import annotations

import numpy as np
import pytest

from projections.attribution.heuristic import decay_terms
from tests.projections.attribution.attribution_spec import converted, given, prospect, then_credits

HEURISTICS = ("first_touch", "last_touch", "linear", "position_based", "time_decay")


@pytest.mark.parametrize("model", HEURISTICS)
def test_one_touch_path__gets_the_whole_conversion_in_every_model(model):
    result = given(converted("email", value=80.0)).when(model)
    then_credits(result, {"email": (1.0, 80.0)})


@pytest.mark.parametrize("model", HEURISTICS)
def test_empty_path__is_unattributed_and_credited_to_no_label(model):
    result = given(converted(value=50.0), converted("email", value=20.0)).when(model)
    assert (result.conversions, result.value) == (1, 20.0)
    assert (result.unattributed_conversions, result.unattributed_value) == (1, 50.0)
    then_credits(result, {"email": (1.0, 20.0)})


@pytest.mark.parametrize("model", HEURISTICS)
def test_non_converting_paths__earn_nothing_but_their_labels_are_listed(model):
    result = given(converted("email", value=10.0), prospect("display", "email")).when(model)
    then_credits(result, {"display": (0.0, 0.0), "email": (1.0, 10.0)})


def test_first_touch__two_touches_all_to_the_first():
    result = given(converted("social", "search", value=40.0)).when("first_touch")
    then_credits(result, {"search": (0.0, 0.0), "social": (1.0, 40.0)})


def test_last_touch__two_touches_all_to_the_last():
    result = given(converted("social", "search", value=40.0)).when("last_touch")
    then_credits(result, {"search": (1.0, 40.0), "social": (0.0, 0.0)})


def test_first_and_last_touch__sum_over_several_conversions():
    paths = (converted("social", "search", value=40.0), converted("search", "email", value=60.0))
    then_credits(given(*paths).when("first_touch"), {"email": (0, 0), "search": (1, 60.0), "social": (1, 40.0)})
    then_credits(given(*paths).when("last_touch"), {"email": (1, 60.0), "search": (1, 40.0), "social": (0, 0)})


def test_linear__two_touches_split_evenly():
    result = given(converted("social", "search", value=40.0)).when("linear")
    then_credits(result, {"search": (0.5, 20.0), "social": (0.5, 20.0)})


def test_linear__repeated_channel_gets_one_share_per_touch():
    result = given(converted("email", "email", "search", value=30.0)).when("linear")
    then_credits(result, {"email": (2 / 3, 20.0), "search": (1 / 3, 10.0)})


def test_position_based__two_touches_split_fifty_fifty():
    result = given(converted("social", "search", value=10.0)).when("position_based")
    then_credits(result, {"search": (0.5, 5.0), "social": (0.5, 5.0)})


def test_position_based__three_touches_forty_twenty_forty():
    result = given(converted("social", "email", "search", value=100.0)).when("position_based")
    then_credits(result, {"email": (0.2, 20.0), "search": (0.4, 40.0), "social": (0.4, 40.0)})


def test_position_based__middle_twenty_percent_spread_over_three_middle_touches():
    result = given(converted("a", "b", "c", "d", "e", value=300.0)).when("position_based")
    third = 0.2 / 3
    middle = (third, 20.0)
    then_credits(result, {"a": (0.4, 120.0), "b": middle, "c": middle, "d": middle, "e": (0.4, 120.0)})


def test_position_based__same_channel_first_and_last_gets_both_ends():
    result = given(converted("email", "display", "email", value=10.0)).when("position_based")
    then_credits(result, {"display": (0.2, 2.0), "email": (0.8, 8.0)})


def test_time_decay__touch_one_half_life_older_weighs_half():
    result = given(converted(("social", 7.0), ("search", 0.0), value=30.0)).when("time_decay")
    then_credits(result, {"search": (2 / 3, 20.0), "social": (1 / 3, 10.0)})


def test_time_decay__weights_are_two_to_the_minus_age_over_half_life():
    ages = {"a": 21.0, "b": 7.0, "c": 3.5}
    result = given(converted(*ages.items(), value=1.0)).when("time_decay")
    raw = {label: 2 ** (-age / 7.0) for label, age in ages.items()}
    total = sum(raw.values())
    then_credits(result, {label: (w / total, w / total) for label, w in raw.items()})


def test_time_decay__half_life_parameter_changes_the_weights():
    path = converted(("social", 14.0), ("search", 0.0), value=30.0)
    one_half_life = given(path).when("time_decay", half_life_days=14.0)
    two_half_lives = given(path).when("time_decay", half_life_days=7.0)
    then_credits(one_half_life, {"search": (2 / 3, 20.0), "social": (1 / 3, 10.0)})
    then_credits(two_half_lives, {"search": (0.8, 24.0), "social": (0.2, 6.0)})


def test_time_decay__repeated_channel_sums_its_touches():
    result = given(converted(("email", 7.0), ("email", 7.0), ("search", 0.0), value=4.0)).when("time_decay")
    then_credits(result, {"email": (0.5, 2.0), "search": (0.5, 2.0)})


def test_time_decay__touches_years_old_do_not_underflow():
    result = given(converted(("social", 20_007.0), ("search", 20_000.0), value=3.0)).when("time_decay")
    then_credits(result, {"search": (2 / 3, 2.0), "social": (1 / 3, 1.0)})


def test_time_decay__touches_on_the_same_day_share_equally():
    result = given(converted(("social", 2.0), ("search", 2.0), value=8.0)).when("time_decay")
    then_credits(result, {"search": (0.5, 4.0), "social": (0.5, 4.0)})



def test_time_decay_terms__whole_number_values_are_weighed_as_floats():
    # given two conversions' touches whose values come as integers, and the same as floats
    lengths, ages, label_of = np.array([2, 1]), np.array([7.0, 0.0, 3.0]), np.array([0, 1, 0])
    # when their terms are weighed
    as_ints = decay_terms(lengths, ages, label_of, np.array([30, 4]), 7.0, labels=2)
    as_floats = decay_terms(lengths, ages, label_of, np.array([30.0, 4.0]), 7.0, labels=2)
    # then the terms are the same floats
    assert {i: (list(c), list(v)) for i, (c, v) in as_ints.items()} == \
        {i: (list(c), list(v)) for i, (c, v) in as_floats.items()}
    assert list(as_ints[0][1]) == [10.0, 4.0]
