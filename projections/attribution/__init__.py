"""Multi-touch attribution models over conversion paths: pure code (stdlib + numpy), no I/O.

``attribute(paths, model)`` credits the attributed conversions (converting
paths with at least one touch) and their value to labels (channels or
campaigns). Converting paths without a touch are counted as unattributed.
The models (definitions in each module):

- heuristic.py: ``first_touch``, ``last_touch``, ``linear``, ``time_decay``,
  ``position_based``; they read converting paths only.
- markov.py: ``markov``, removal effects of a first-order chain over all
  paths, solved exactly.
- shapley.py: ``shapley``, exact Shapley values of a conversion-rate game over
  all paths' channel sets, exact up to 20 distinct labels.

For every model the credits add up to the attributed conversions and value
to within floating-point rounding, and the result does not depend on the
order of ``paths``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from projections.attribution.heuristic import (
    first_touch,
    last_touch,
    linear,
    position_based,
    time_decay,
)
from projections.attribution.path_counts import PathCounts, fold_paths
from projections.attribution.paths import Attribution, Path
from projections.attribution.markov import MarkovChain, markov, markov_chain
from projections.attribution.shapley import (
    MAX_EXACT_CHANNELS,
    OTHER,
    shapley,
    shapley_values,
)

__all__ = [
    "MAX_EXACT_CHANNELS",
    "MODELS",
    "OTHER",
    "Attribution",
    "MarkovChain",
    "Path",
    "attribute",
    "attribute_all",
    "markov_chain",
    "shapley_values",
]

MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based", "markov", "shapley")

_BY_NAME = {
    "first_touch": first_touch,
    "last_touch": last_touch,
    "linear": linear,
    "position_based": position_based,
    "markov": markov,
    "shapley": shapley,
}


def attribute(paths: Sequence[Path], model: str, *, half_life_days: float = 7.0) -> Attribution:
    """Credits of ``model`` over ``paths``.

    Raises `ValueError` for an unknown ``model`` (naming the accepted ones), a
    ``half_life_days`` that is not a finite number > 0, or a malformed path
    (naming ``paths[i]`` and the field).
    """
    _check_model(model)
    _check_half_life(half_life_days)
    return _run(fold_paths(paths), model, half_life_days)


def attribute_all(
    paths: Sequence[Path], models: Sequence[str] = MODELS, *, half_life_days: float = 7.0
) -> dict[str, Attribution]:
    """Several models over the same paths, checking and folding them once."""
    for model in models:
        _check_model(model)
    _check_half_life(half_life_days)
    counts = fold_paths(paths)
    return {model: _run(counts, model, half_life_days) for model in models}


def _run(counts: PathCounts, model: str, half_life_days: float) -> Attribution:
    if model == "time_decay":
        return time_decay(counts, half_life_days=float(half_life_days))
    return _BY_NAME[model](counts)


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"model: unknown attribution model {model!r}; accepted: {', '.join(MODELS)}")


def _check_half_life(half_life_days: float) -> None:
    valid = isinstance(half_life_days, (int, float)) and not isinstance(half_life_days, bool)
    if not (valid and math.isfinite(half_life_days) and half_life_days > 0):
        raise ValueError(f"half_life_days: must be a finite number of days > 0, got {half_life_days!r}")
