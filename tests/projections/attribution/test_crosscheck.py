"""Cross-check against the ChannelAttribution package (PyPI ``channelattribution`` 2.2, GPL, C++ core).

The data: ``bench.attribution.generate_paths(10_000, 10_000, seed=3)``, i.e.
20,000 journeys (10,000 conversions, ~3 % of them without a touch, and 10,000
non-converting paths) over 12 channels with repeats, aggregated into the
package's input: one row per label sequence "a > b > c" with
total_conversions, total_conversion_value and total_null.

What we found in the package (functions.cpp / ChannelAttribution.pyx):
- ``heuristic_models`` does not collapse repeats: first/last touch take the
  first/last channel, linear gives every touch 1/n, as ours. Tolerance 1e-6
  relative (seen: 3e-15).
- ``markov_model`` collapses consecutive repeats before fitting (as ours);
  ``transition_matrix`` keeps them unless ``flg_equal=False``. With it the
  fitted transition probabilities agree with ours to 1e-12 (same counts).
- ``markov_model`` estimates removal effects by simulating walks through the
  chain (nsim_start=1e5, seed 0, more until its own 5 % convergence test
  passes) and reports removal effect = share of converting simulated walks
  that visit the channel, which is exactly our 1 - P(conv without c)/P(conv);
  credits = conversions x effect / sum of effects, as ours. Simulation noise is
  the only difference: we hold max |difference of conversion shares| < 0.01
  and of removal effects < 0.02 at its default nsim (seen: 0.0035 / 0.0068),
  and < 0.005 / < 0.01 with nsim_start=1e6 (seen: 0.0010 / 0.0020).
- Its value credits come from a separate simulation weighted by conversion
  value; ours are the conversion shares times the attributed value (the
  issue's definition), so only conversion credits are compared for Markov.
- It prints a banner on import and on every call unless ``flg_pro=False``;
  ``verbose=False`` silences the convergence log.
"""

from __future__ import annotations

from collections import Counter

import ChannelAttribution as channel_attribution
import pandas as pd
import pytest

from bench.attribution import generate_paths
from projections.attribution import Path, attribute, markov_chain

HEURISTICS = {"first_touch": "first_touch", "last_touch": "last_touch", "linear": "linear_touch"}


@pytest.fixture(scope="module")
def journeys() -> list[Path]:
    paths = generate_paths(10_000, 10_000, seed=3)
    assert len(paths) >= 10_000
    return paths


@pytest.fixture(scope="module")
def frame(journeys: list[Path]) -> pd.DataFrame:
    return _frame(journeys)


def test_crosscheck__heuristics_match_channelattribution_to_1e_6(journeys, frame):
    theirs = channel_attribution.heuristic_models(
        frame, "path", "total_conversions", var_value="total_conversion_value", flg_pro=False
    ).set_index("channel_name")

    for model, column in HEURISTICS.items():
        ours = attribute(journeys, model).credits
        assert set(ours) == set(theirs.index)
        for channel, (conversions, value) in ours.items():
            expected = (theirs.loc[channel, f"{column}_conversions"], theirs.loc[channel, f"{column}_value"])
            assert (conversions, value) == pytest.approx(expected, rel=1e-6), (model, channel)


def test_crosscheck__markov_transition_probabilities_match_exactly(journeys, frame):
    theirs = channel_attribution.transition_matrix(
        frame, "path", "total_conversions", "total_null", flg_equal=False, flg_pro=False
    )
    names = dict(zip(theirs["channels"].id_channel.astype(str), theirs["channels"].channel_name))
    matrix = theirs["transition_matrix"]
    theirs_by_pair = {
        (names.get(str(origin), origin), names.get(str(target), target)): probability
        for origin, target, probability in zip(matrix.channel_from, matrix.channel_to, matrix.transition_probability)
    }

    assert markov_chain(journeys).transitions == pytest.approx(theirs_by_pair, rel=1e-12)


@pytest.mark.parametrize(
    ("nsim", "share_tolerance", "effect_tolerance"),
    [(1e5, 0.01, 0.02), (1e6, 0.005, 0.01)],
    ids=["default-nsim", "nsim-1e6"],
)
def test_crosscheck__markov_matches_channelattribution_within_simulation_noise(
    journeys, frame, nsim, share_tolerance, effect_tolerance
):
    theirs = channel_attribution.markov_model(
        frame, "path", "total_conversions", var_null="total_null",
        nsim_start=nsim, out_more=True, verbose=False, flg_pro=False,
    )
    their_credits = theirs["result"].set_index("channel_name").total_conversions
    their_effects = theirs["removal_effects"].set_index("channel_name").removal_effect

    ours = attribute(journeys, "markov")
    effects = markov_chain(journeys).removal_effects
    assert set(ours.credits) == set(their_credits.index)
    for channel, (conversions, _) in ours.credits.items():
        our_share = conversions / ours.conversions
        their_share = their_credits[channel] / their_credits.sum()
        assert abs(our_share - their_share) < share_tolerance, channel
        assert abs(effects[channel] - their_effects[channel]) < effect_tolerance, channel


def test_crosscheck__channelattribution_markov_collapses_repeats_like_ours():
    repeated = pd.DataFrame(
        {"path": ["a > a > b", "b > b", "a > c > c"], "total_conversions": [3, 2, 1], "total_null": [1, 2, 4]}
    )
    collapsed = repeated.assign(path=["a > b", "b", "a > c"])
    runs = [
        channel_attribution.markov_model(
            data, "path", "total_conversions", var_null="total_null", verbose=False, flg_pro=False
        ).set_index("channel_name").total_conversions
        for data in (repeated, collapsed)
    ]
    pd.testing.assert_series_equal(runs[0], runs[1])


def _frame(paths: list[Path]) -> pd.DataFrame:
    conversions: Counter[str] = Counter()
    nulls: Counter[str] = Counter()
    values: dict[str, float] = {}
    for path in paths:
        if not path.touches:
            continue
        key = " > ".join(label for label, _ in path.touches)
        if path.converted:
            conversions[key] += 1
            values[key] = values.get(key, 0.0) + path.value
        else:
            nulls[key] += 1
    keys = sorted(conversions.keys() | nulls.keys())
    return pd.DataFrame(
        {
            "path": keys,
            "total_conversions": [conversions[k] for k in keys],
            "total_conversion_value": [values.get(k, 0.0) for k in keys],
            "total_null": [nulls[k] for k in keys],
        }
    )
