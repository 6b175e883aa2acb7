"""Properties of every model on generated path sets, and the exact solvers against brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.attribution import MODELS, Path, attribute, markov_chain, shapley_values

LABELS = ("a", "b", "c", "d", "e")


@st.composite
def paths_(draw, max_paths: int = 25) -> list[Path]:
    paths = []
    for _ in range(draw(st.integers(0, max_paths))):
        labels = draw(st.lists(st.sampled_from(LABELS), max_size=6))
        ages = draw(st.lists(st.floats(0, 400, allow_nan=False), min_size=len(labels), max_size=len(labels)))
        ages.sort(reverse=True)
        if draw(st.booleans()):
            value = draw(st.floats(0, 5_000, allow_nan=False))
            paths.append(Path(tuple(zip(labels, ages)), True, value))
        else:
            paths.append(Path(tuple(zip(labels, ages)), False, 0.0))
    return paths


half_lives = st.floats(0.1, 400, allow_nan=False)


@given(paths=paths_(), half_life=half_lives)
@settings(deadline=None)
def test_credits__add_up_to_the_attributed_totals_and_are_never_negative(paths, half_life):
    attributed = [p for p in paths if p.converted and p.touches]
    for model in MODELS:
        result = attribute(paths, model, half_life_days=half_life)

        assert result.conversions == len(attributed), model
        assert result.value == pytest.approx(math.fsum(p.value for p in attributed), rel=1e-12, abs=1e-9), model
        assert result.unattributed_conversions == sum(1 for p in paths if p.converted and not p.touches), model
        conversions = math.fsum(c for c, _ in result.credits.values())
        assert conversions == pytest.approx(result.conversions, rel=1e-9, abs=1e-9), model
        value = math.fsum(v for _, v in result.credits.values())
        assert value == pytest.approx(result.value, rel=1e-9, abs=1e-6), model
        assert all(c >= 0 and v >= 0 for c, v in result.credits.values()), model
        assert set(result.credits) == {label for p in paths for label, _ in p.touches}, model


@given(data=st.data(), paths=paths_(), half_life=half_lives)
@settings(deadline=None)
def test_permuting_the_paths__changes_nothing_bit_for_bit(data, paths, half_life):
    shuffled = data.draw(st.permutations(paths))
    for model in MODELS:
        expected = attribute(paths, model, half_life_days=half_life)
        assert attribute(shuffled, model, half_life_days=half_life) == expected, model


@given(paths=paths_())
@settings(deadline=None)
def test_time_decay__with_an_endless_half_life_is_linear(paths):
    decayed = attribute(paths, "time_decay", half_life_days=1e15)
    linear = attribute(paths, "linear")
    for label, (conversions, value) in linear.credits.items():
        assert decayed.credits[label][0] == pytest.approx(conversions, rel=1e-9, abs=1e-9)
        assert decayed.credits[label][1] == pytest.approx(value, rel=1e-9, abs=1e-6)


@given(paths=paths_(max_paths=40))
@settings(deadline=None)
def test_markov__removal_effects_equal_solving_the_chain_again_without_each_channel(paths):
    chain = markov_chain(paths)
    if chain.conversion_probability == 0:
        return
    for channel in chain.channels:
        without = _absorption_without(chain.transitions, channel)
        expected = 1 - without / chain.conversion_probability
        assert chain.removal_effects[channel] == pytest.approx(expected, rel=1e-9, abs=1e-12)


@given(paths=paths_(max_paths=40))
@settings(deadline=None)
def test_shapley__values_equal_the_average_marginal_contribution_over_all_orders(paths):
    values = shapley_values(paths)
    players = sorted(values)
    orders = list(itertools.permutations(players))
    for player in players:
        marginal = 0.0
        for order in orders:
            before = order[: order.index(player)]
            marginal += _worth(paths, (*before, player)) - _worth(paths, before)
        assert values[player] == pytest.approx(marginal / len(orders), rel=1e-9, abs=1e-12)


def _absorption_without(transitions: dict[tuple[str, str], float], removed: str) -> float:
    """P(conversion) when every transition into ``removed`` goes to (null): a plain linear solve."""
    states = sorted({s for pair in transitions for s in pair} - {"(conversion)", "(null)", removed})
    index = {s: i for i, s in enumerate(states)}
    system = np.eye(len(states))
    rhs = np.zeros(len(states))
    for (origin, target), p in transitions.items():
        if origin not in index:
            continue
        if target == "(conversion)":
            rhs[index[origin]] += p
        elif target in index:
            system[index[origin], index[target]] -= p
    return float(np.linalg.solve(system, rhs)[index["(start)"]])


def _worth(paths: list[Path], coalition: tuple[str, ...]) -> float:
    """Conversion rate of the journeys whose channels all lie in ``coalition``."""
    fitting = [p for p in paths if p.touches and {label for label, _ in p.touches} <= set(coalition)]
    return sum(p.converted for p in fitting) / len(fitting) if fitting else 0.0
