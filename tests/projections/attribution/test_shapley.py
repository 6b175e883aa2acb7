"""The Shapley model on two and three channels computed by hand, and its exact-size limit."""

from __future__ import annotations

import pytest
from tests.projections.attribution.attribution_spec import converted, given, prospect, then_credits

from projections.attribution import MAX_EXACT_CHANNELS, OTHER, shapley_values


def two_channels():
    # v(a) = 1/2 (a alone: 1 of 2), v(b) = 1/4 (1 of 4), v(ab) = 4/8.
    # phi_a = v(a)/2 + (v(ab) - v(b))/2 = 3/8; phi_b = v(b)/2 + (v(ab) - v(a))/2 = 1/8.
    return given(
        converted("a", value=10.0),
        prospect("a"),
        converted("b", value=10.0),
        *[prospect("b")] * 3,
        *[converted("a", "b", value=10.0)] * 2,
    )


def test_shapley__two_channels_by_hand():
    then_credits(two_channels().when("shapley"), {"a": (3.0, 30.0), "b": (1.0, 10.0)})


def test_shapley__values_are_the_raw_phi_and_sum_to_the_conversion_rate():
    assert shapley_values(two_channels().paths) == pytest.approx({"a": 3 / 8, "b": 1 / 8}, rel=1e-12)


def test_shapley__three_channels_by_hand_with_a_negative_value_clipped():
    # Channel sets: {a,b} 3 of 4 convert, {c} 0 of 4, {b,c} 3 of 5.
    # v(ab) = 3/4, v(c) = 0, v(ac) = 0, v(bc) = 3/9, v(abc) = 6/13, singletons of a, b: 0.
    paths = [
        converted("a", "b", "a", value=10.0),
        prospect("a", "b", "a"),
        *[converted("a", "a", "b", value=10.0)] * 2,
        *[prospect("c")] * 4,
        *[converted("b", "c", value=10.0)] * 3,
        *[prospect("b", "c")] * 2,
    ]
    phi_a = (3 / 4) / 6 + (6 / 13 - 1 / 3) / 3
    phi_b = (3 / 4) / 6 + (1 / 3) / 6 + (6 / 13) / 3
    phi_c = (1 / 3) / 6 + (6 / 13 - 3 / 4) / 3
    assert shapley_values(paths) == pytest.approx({"a": phi_a, "b": phi_b, "c": phi_c}, rel=1e-12)

    result = given(*paths).when("shapley")
    share_a = phi_a / (phi_a + phi_b)
    share_b = 1 - share_a
    then_credits(result, {"a": (6 * share_a, 60 * share_a), "b": (6 * share_b, 60 * share_b), "c": (0.0, 0.0)})
    assert any("negative Shapley value" in note and note.endswith(": c") for note in result.notes)


def test_shapley__symmetric_channels_get_equal_credit():
    result = given(converted("a", "b"), converted("b", "a"), prospect("a"), prospect("b")).when("shapley")
    then_credits(result, {"a": (1.0, 100.0), "b": (1.0, 100.0)})


def test_shapley__a_path_counts_its_channel_set_once():
    repeated = given(converted("a", "a", "b", "a"), prospect("b", "b"), converted("a")).when("shapley")
    plain = given(converted("a", "b"), prospect("b"), converted("a")).when("shapley")
    then_credits(repeated, plain.credits)


def test_shapley__empty_path_is_unattributed_and_outside_the_game():
    result = given(converted(value=4.0), converted("a", value=6.0), prospect("a")).when("shapley")
    assert (result.unattributed_conversions, result.unattributed_value) == (1, 4.0)
    then_credits(result, {"a": (1.0, 6.0)})


def test_shapley__exactly_the_limit_of_channels_is_computed_without_pooling():
    channels = [f"ch{i:02d}" for i in range(MAX_EXACT_CHANNELS)]
    result = given(*[converted(c, value=1.0) for c in channels], *[prospect(c) for c in channels]).when("shapley")
    assert result.notes == ()
    then_credits(result, {c: (1.0, 1.0) for c in channels})


def test_shapley__beyond_the_limit_least_frequent_channels_are_pooled_into_other():
    frequent = [f"top{i:02d}" for i in range(MAX_EXACT_CHANNELS - 1)]
    rare = ["rare_a", "rare_b", "rare_c"]
    paths = [converted(c, value=2.0) for c in frequent for _ in range(3)]
    paths += [prospect(c) for c in frequent for _ in range(3)]
    paths += [converted(c, value=2.0) for c in rare] + [prospect(c) for c in rare]

    result = given(*paths).when("shapley")

    assert set(result.credits) == {*frequent, OTHER}
    assert result.credits[OTHER] == (pytest.approx(3.0, rel=1e-12), pytest.approx(6.0, rel=1e-12))
    assert result.credits["top00"] == (pytest.approx(3.0, rel=1e-12), pytest.approx(6.0, rel=1e-12))
    assert len(result.notes) == 1 and "pooled into '(other)': rare_a, rare_b, rare_c" in result.notes[0]
    assert sum(c for c, _ in result.credits.values()) == pytest.approx(result.conversions, rel=1e-12)
