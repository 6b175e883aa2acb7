"""Markov-chain attribution with removal effects, solved exactly.

The model (Anderl, Becker, von Wangenheim & Schumann, "Mapping the customer
journey: lessons learned from graph-based online attribution modeling", IJRM
2016; the approach of the ChannelAttribution package):

- Every path, converting or not, with consecutive repeats collapsed (a>a>b is
  a>b, as ChannelAttribution's ``markov_model`` does) is a walk
  ``(start) > c1 > ... > cn > (conversion)`` or ``... > (null)``. Transition
  probabilities are the observed transition counts over each state's total.
- ``P(conversion)`` is the probability of absorption in ``(conversion)`` from
  ``(start)``. Removing channel c sends every transition into c to ``(null)``;
  its removal effect is ``1 - P(conversion without c) / P(conversion)``.
- Credits: attributed conversions x removal effect / sum of removal effects;
  value credits are the same shares x attributed value.

Exact rather than simulated: with Q the transient part of the transition
matrix and N = (I - Q)^-1 its fundamental matrix, the walk hits c with
probability N[start, c] / N[c, c] and then converts with probability x[c],
x = N r (r: one-step conversion probabilities). A walk that converts without c
is exactly one that never hits c, so the removal effect of c is
``N[start, c] / N[c, c] * x[c] / x[start]``: one matrix inverse for all
channels, no simulation noise. The matrix is dense, (k+1)^2 for k labels:
O(k^3) time, milliseconds for tens of channels, about a second near 2,000
campaign labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from projections.attribution.path_counts import PathCounts, attribution_from_shares, fold_paths
from projections.attribution.paths import Attribution, Path

START, CONVERSION, NULL = "(start)", "(conversion)", "(null)"


@dataclass(frozen=True)
class MarkovChain:
    """A first-order chain fitted to collapsed paths.

    ``transitions``: (from, to) -> probability, non-zero ones only; states are
    the channels plus ``(start)``, ``(conversion)`` and ``(null)``.
    ``conversion_probability``: absorption in ``(conversion)`` from ``(start)``.
    ``removal_effects``: channel -> 1 - P(conversion without it) / P(conversion).
    """

    channels: tuple[str, ...]
    transitions: dict[tuple[str, str], float]
    conversion_probability: float
    removal_effects: dict[str, float]


def markov_chain(paths: Sequence[Path]) -> MarkovChain:
    """Fit the chain to ``paths`` (checked like `attribute` does)."""
    return fit_chain(fold_paths(paths))


def markov(counts: PathCounts) -> Attribution:
    if counts.conversions == 0:
        return attribution_from_shares("markov", counts, {})
    effects = fit_chain(counts).removal_effects
    total = sum(effects.values())
    return attribution_from_shares("markov", counts, {c: e / total for c, e in effects.items()})


def fit_chain(path_counts: PathCounts) -> MarkovChain:
    """The chain over `PathCounts` (collapsed label sequences, all paths)."""
    channels = path_counts.labels
    k = len(channels)
    conversion, null = k + 1, k + 2
    counts = _transition_counts(path_counts, {c: i + 1 for i, c in enumerate(channels)}, conversion, null)
    if k == 0:
        return MarkovChain(channels, {}, 0.0, {})
    out = counts.sum(axis=1, keepdims=True)
    probabilities = np.divide(counts, out, out=np.zeros_like(counts), where=out > 0)

    transient = probabilities[: k + 1, : k + 1]
    fundamental = np.linalg.inv(np.eye(k + 1) - transient)
    converts_from = fundamental @ probabilities[: k + 1, conversion]
    p_conversion = float(converts_from[0])
    if p_conversion > 0:
        hit = fundamental[0, 1:] / np.diag(fundamental)[1:]
        effects = np.clip(hit * converts_from[1:] / p_conversion, 0.0, 1.0)
    else:
        effects = np.zeros(k)

    names = (START, *channels, CONVERSION, NULL)
    rows, cols = np.nonzero(probabilities)
    transitions = {(names[i], names[j]): float(probabilities[i, j]) for i, j in zip(rows, cols)}
    return MarkovChain(
        channels=channels,
        transitions=transitions,
        conversion_probability=p_conversion,
        removal_effects={c: float(e) for c, e in zip(channels, effects)},
    )


def _transition_counts(path_counts: PathCounts, index: dict[str, int], conversion: int, null: int) -> np.ndarray:
    converting, non_converting = path_counts.collapsed()
    pairs: dict[tuple[int, int], int] = {}

    def walk(labels: tuple[str, ...], n: int, end: int) -> None:
        previous = 0
        for label in labels:
            state = index[label]
            pairs[previous, state] = pairs.get((previous, state), 0) + n
            previous = state
        pairs[previous, end] = pairs.get((previous, end), 0) + n

    for labels, (count, _) in converting.items():
        walk(labels, count, conversion)
    for labels, count in non_converting.items():
        walk(labels, count, null)

    counts = np.zeros((null + 1, null + 1))
    for (i, j), n in pairs.items():
        counts[i, j] = n
    return counts
