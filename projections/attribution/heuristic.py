"""Rule-based models: each converting path hands out weights that sum to 1 over its touches.

- ``first_touch`` / ``last_touch``: everything to the first / last touch.
- ``linear``: every touch an equal share, so a label touched twice gets two shares.
- ``position_based``: 40 % first, 40 % last, 20 % spread evenly over the touches
  in between; one touch gets 100 %, two touches 50/50.
- ``time_decay``: weight 2^(-age/half_life) per touch (age = days from the touch
  to the conversion), normalised per path.

A path's weights multiply both its conversion count and its value, so the
credits add up to the attributed conversions and value. Weights depend only on
a path's labels, so they are computed once per distinct label sequence;
``time_decay`` weighs every path's ages, vectorised with numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from itertools import chain
from operator import itemgetter

import numpy as np

from projections.attribution.path_counts import PathCounts, Totals, attribution_from_terms
from projections.attribution.paths import Attribution, Labels

Weights = Callable[[Labels], list[float]]


def first_touch(counts: PathCounts) -> Attribution:
    return _by_labels("first_touch", counts)


def last_touch(counts: PathCounts) -> Attribution:
    return _by_labels("last_touch", counts)


def linear(counts: PathCounts) -> Attribution:
    return _by_labels("linear", counts)


def position_based(counts: PathCounts) -> Attribution:
    return _by_labels("position_based", counts)


def time_decay(counts: PathCounts, *, half_life_days: float) -> Attribution:
    touches = counts.converting_touches
    lengths = np.fromiter(map(len, touches), dtype=np.intp, count=len(touches))
    flat = list(chain.from_iterable(touches))
    ages = np.fromiter(map(itemgetter(1), flat), dtype=float, count=len(flat))
    index = {label: i for i, label in enumerate(counts.labels)}
    label_of = np.fromiter(map(index.__getitem__, map(itemgetter(0), flat)), dtype=np.intp, count=len(flat))
    return decay_attribution(counts, lengths, ages, label_of, np.array(counts.converting_values), half_life_days)


def decay_attribution(
    totals: Totals,
    lengths: np.ndarray,
    ages: np.ndarray,
    label_of: np.ndarray,
    values: np.ndarray,
    half_life_days: float,
) -> Attribution:
    """``time_decay``'s credits over the attributed conversions given as columns: each
    conversion's number of touches (``lengths``) and value (``values``), its touches'
    ages in days and labels (``label_of``: an index into ``totals.labels``) flat in
    conversion order. The order of the conversions does not change the result."""
    terms = decay_terms(lengths, ages, label_of, values, half_life_days, len(totals.labels))
    return attribution_from_terms("time_decay", totals, {totals.labels[i]: pair for i, pair in terms.items()})


def decay_terms(
    lengths: np.ndarray,
    ages: np.ndarray,
    label_of: np.ndarray,
    values: np.ndarray,
    half_life_days: float,
    labels: int,
) -> dict[int, tuple[memoryview, memoryview]]:
    """``decay_attribution``'s terms, per label index: the (conversion, value) terms of the
    touches of that label. Their fsums are the credits; the terms of any split of the
    conversions into batches, fsummed together, are the same credits bit for bit (a
    conversion's weights are its own, and fsum is exact), so a caller may weigh a few
    conversions at a time and hold only the terms."""
    if not len(lengths):
        return {}
    weights = decay_weights(lengths, ages, half_life_days)
    value_weights = np.repeat(np.asarray(values, dtype=float), lengths)  # a copy: multiplied in place
    value_weights *= weights
    order = np.argsort(label_of, kind="stable")
    bounds = np.searchsorted(label_of[order], np.arange(labels + 1))
    # memoryviews, not lists: fsum reads their floats as fast, without a Python float per touch
    conversion_terms, value_terms = memoryview(weights[order]), memoryview(value_weights[order])
    return {
        i: (conversion_terms[bounds[i] : bounds[i + 1]], value_terms[bounds[i] : bounds[i + 1]])
        for i in range(labels)
        if bounds[i + 1] > bounds[i]
    }


def decay_weights(lengths: np.ndarray, ages: np.ndarray, half_life_days: float) -> np.ndarray:
    """Every touch's time-decay weight, normalised per path: ``ages`` are the paths'
    touches' ages in days, flat in path order, ``lengths`` each path's number of touches.

    A path's weights depend on that path alone (bit for bit, however many paths are
    weighed together), so a maintained view may weigh any batch of paths."""
    starts = np.cumsum(lengths) - lengths
    # Relative to each path's youngest touch: the same weights once normalised, and
    # no underflow to zero for paths whose touches are all years old.
    youngest = np.repeat(np.minimum.reduceat(ages, starts), lengths)
    weights = np.exp2(-(ages - youngest) / half_life_days)
    weights /= np.repeat(np.add.reduceat(weights, starts), lengths)
    return weights


def _position_weights(labels: Labels) -> list[float]:
    n = len(labels)
    if n == 1:
        return [1.0]
    if n == 2:
        return [0.5, 0.5]
    return [0.4] + [0.2 / (n - 2)] * (n - 2) + [0.4]


LABEL_WEIGHTS: dict[str, Weights] = {
    "first_touch": lambda labels: [1.0] + [0.0] * (len(labels) - 1),
    "last_touch": lambda labels: [0.0] * (len(labels) - 1) + [1.0],
    "linear": lambda labels: [1.0 / len(labels)] * len(labels),
    "position_based": _position_weights,
}
"""The models whose weights depend on a path's labels alone: a path's weight per touch."""


def sequence_terms(model: str, labels: Labels, count: int, value: float) -> Iterator[tuple[str, float, float]]:
    """What the ``count`` paths with label sequence ``labels`` and total value ``value``
    add to each label's credit under ``model`` (a `LABEL_WEIGHTS` model):
    ``(label, conversion term, value term)``, labels with a zero weight left out."""
    per_label: dict[str, float] = {}
    for label, weight in zip(labels, LABEL_WEIGHTS[model](labels)):
        per_label[label] = per_label.get(label, 0.0) + weight
    for label, weight in per_label.items():
        if weight:
            yield label, count * weight, value * weight


def _by_labels(model: str, counts: PathCounts) -> Attribution:
    return label_attribution(model, counts, counts.converting)


def label_attribution(
    model: str, totals: Totals, converting: Mapping[Labels, tuple[int, float]]
) -> Attribution:
    """A `LABEL_WEIGHTS` model's credits over the converting paths tallied per label
    sequence (``converting``: sequence -> (paths, fsum of their values))."""
    terms: dict[str, tuple[list[float], list[float]]] = {}
    for labels, (count, value) in converting.items():
        for label, conversion_term, value_term in sequence_terms(model, labels, count, value):
            conversion_terms, value_terms = terms.setdefault(label, ([], []))
            conversion_terms.append(conversion_term)
            value_terms.append(value_term)
    return attribution_from_terms(model, totals, terms)
