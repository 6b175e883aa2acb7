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

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from projections.attribution.path_counts import PathCounts, Totals, attribution_from_shares, collapse, fold_paths
from projections.attribution.paths import Attribution, Labels, Path

START, CONVERSION, NULL = "(start)", "(conversion)", "(null)"
# The chain's own states in transition counts: ints, so no label (a str) can be mistaken for one.
START_STATE, CONVERSION_STATE, NULL_STATE = 0, 1, 2
State = str | int


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
    return markov_of_transitions(counts, transition_counts(counts))


def markov_of_transitions(totals: Totals, transitions: Mapping[tuple[State, State], int]) -> Attribution:
    """The model's credits from the transition counts of the paths ``totals`` sums up."""
    if totals.conversions == 0:
        return attribution_from_shares("markov", totals, {})
    effects = chain_of_transitions(totals.labels, transitions).removal_effects
    total = sum(effects.values())
    return attribution_from_shares("markov", totals, {c: e / total for c, e in effects.items()})


def fit_chain(path_counts: PathCounts) -> MarkovChain:
    """The chain over `PathCounts` (collapsed label sequences, all paths)."""
    return chain_of_transitions(path_counts.labels, transition_counts(path_counts))


def transition_counts(path_counts: PathCounts) -> Counter[tuple[State, State]]:
    """How often each transition (between labels and ``*_STATE``) is taken by the collapsed paths."""
    return sequence_transitions(*path_counts.collapsed())


def sequence_transitions(
    converting: Mapping[Labels, tuple[int, float]], non_converting: Mapping[Labels, int]
) -> Counter[tuple[State, State]]:
    """The transition counts of paths tallied per label sequence (as `PathCounts` holds
    them), each sequence collapsed before it is walked."""
    counts: Counter[tuple[State, State]] = Counter()
    for labels, (n, _) in converting.items():
        for transition in walk(collapse(labels), converted=True):
            counts[transition] += n
    for labels, n in non_converting.items():
        for transition in walk(collapse(labels), converted=False):
            counts[transition] += n
    return counts


def walk(collapsed: Labels, *, converted: bool) -> Iterator[tuple[State, State]]:
    """The transitions of one collapsed path, from the start to its end state."""
    previous: State = START_STATE
    for label in collapsed:
        yield previous, label
        previous = label
    yield previous, CONVERSION_STATE if converted else NULL_STATE


def chain_of_transitions(channels: Labels, transitions: Mapping[tuple[State, State], int]) -> MarkovChain:
    """The chain whose transition probabilities are these counts over each state's total."""
    k = len(channels)
    if k == 0:
        return MarkovChain(channels, {}, 0.0, {})
    conversion, null = k + 1, k + 2
    index: dict[State, int] = {c: i + 1 for i, c in enumerate(channels)}
    index |= {START_STATE: 0, CONVERSION_STATE: conversion, NULL_STATE: null}
    counts = np.zeros((null + 1, null + 1))
    for (source, target), n in transitions.items():
        counts[index[source], index[target]] = n
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
    transitions_out = {(names[i], names[j]): float(probabilities[i, j]) for i, j in zip(rows, cols)}
    return MarkovChain(
        channels=channels,
        transitions=transitions_out,
        conversion_probability=p_conversion,
        removal_effects={c: float(e) for c, e in zip(channels, effects)},
    )
