"""The one pass that checks and folds the models' input, and the credits built from it.

Every model starts from `PathCounts`: paths with the same label sequence are
folded together (ages aside), so the cost of the Markov, Shapley and
label-based models grows with the number of distinct sequences rather than of paths.
Every total is a `math.fsum` (correctly rounded, hence independent of
summation order) or a sum of integers, so permuting the input paths gives
bit-for-bit the same attribution.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, compress

from projections.attribution.checks import check_paths
from projections.attribution.paths import Attribution, Labels, Path, Touches


@dataclass(frozen=True, slots=True)
class Totals:
    """What a model's result repeats beside its credits: the labels it credits (sorted)
    and the attributed and unattributed conversions and value."""

    labels: Labels
    conversions: int
    value: float
    unattributed_conversions: int
    unattributed_value: float


@dataclass(frozen=True, slots=True)
class PathCounts(Totals):
    """Checked paths, folded by label sequence, with their `Totals`.

    ``converting``: label sequence -> (number of paths, fsum of their values),
    converting paths with at least one touch. ``non_converting``: label
    sequence -> number of paths (paths without a touch carry no information
    and are dropped). ``converting_touches``/``converting_values``: the
    converting paths with a touch as given, for the models that read ages.
    ``labels``: every label seen, sorted.
    """

    converting: dict[Labels, tuple[int, float]]
    non_converting: dict[Labels, int]
    converting_touches: list[Touches]
    converting_values: list[float]

    def collapsed(self) -> tuple[dict[Labels, tuple[int, float]], dict[Labels, int]]:
        """`converting` and `non_converting` with consecutive repeats collapsed (a>a>b is a>b)."""
        counts: Counter[Labels] = Counter()
        values: dict[Labels, list[float]] = {}
        for labels, (count, value) in self.converting.items():
            key = collapse(labels)
            counts[key] += count
            values.setdefault(key, []).append(value)
        converting = {key: (counts[key], math.fsum(vs)) for key, vs in values.items()}
        non_converting: Counter[Labels] = Counter()
        for labels, count in self.non_converting.items():
            non_converting[collapse(labels)] += count
        return converting, dict(non_converting)


def fold_paths(paths: Sequence[Path]) -> PathCounts:
    """Check every path and fold them; `ValueError` names the first bad path and field."""
    if not isinstance(paths, (list, tuple)):
        paths = list(paths)
    columns = check_paths(paths)
    touches, converted, values = columns.touches, columns.converted, columns.values
    sequences = [columns.labels[end - n : end] for n, end in zip(columns.lengths, accumulate(columns.lengths))]
    not_converted = [not c for c in converted]

    converting_values: dict[Labels, list[float]] = {}
    unattributed: list[float] = []
    attributed_touches: list[Touches] = []
    attributed_values: list[float] = []
    for sequence, path_touches, value in zip(
        compress(sequences, converted), compress(touches, converted), compress(values, converted)
    ):
        value = float(value)
        if sequence:
            converting_values.setdefault(sequence, []).append(value)
            attributed_touches.append(path_touches)
            attributed_values.append(value)
        else:
            unattributed.append(value)
    non_converting = Counter(compress(sequences, not_converted))
    non_converting.pop((), None)

    converting = {sequence: (len(vs), math.fsum(vs)) for sequence, vs in converting_values.items()}
    labels = set(chain.from_iterable(converting))
    labels.update(chain.from_iterable(non_converting))
    return PathCounts(
        converting=converting,
        non_converting=dict(non_converting),
        converting_touches=attributed_touches,
        converting_values=attributed_values,
        labels=tuple(sorted(labels)),
        conversions=len(attributed_values),
        value=math.fsum(attributed_values),
        unattributed_conversions=len(unattributed),
        unattributed_value=math.fsum(unattributed),
    )


def attribution_from_terms(
    model: str,
    counts: Totals,
    terms: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    notes: tuple[str, ...] = (),
) -> Attribution:
    """An `Attribution` whose credits are the fsums of per-label (conversion, value) terms."""
    credits = {label: (0.0, 0.0) for label in counts.labels}
    for label, (conversion_terms, value_terms) in terms.items():
        credits[label] = (math.fsum(conversion_terms), math.fsum(value_terms))
    return attribution_from_credits(model, counts, credits, notes)


def attribution_from_shares(
    model: str,
    counts: Totals,
    shares: Mapping[str, float],
    notes: tuple[str, ...] = (),
    labels: Iterable[str] | None = None,
) -> Attribution:
    """An `Attribution` giving each label its share (shares sum to 1) of the attributed conversions and value."""
    credits = {label: (0.0, 0.0) for label in (counts.labels if labels is None else labels)}
    for label, share in shares.items():
        credits[label] = (share * counts.conversions, share * counts.value)
    return attribution_from_credits(model, counts, credits, notes)


def attribution_from_credits(
    model: str, counts: Totals, credits: dict[str, tuple[float, float]], notes: tuple[str, ...] = ()
) -> Attribution:
    """An `Attribution` with these (conversion, value) credits per label."""
    return Attribution(
        model=model,
        conversions=counts.conversions,
        value=counts.value,
        unattributed_conversions=counts.unattributed_conversions,
        credits=dict(sorted(credits.items())),
        unattributed_value=counts.unattributed_value,
        notes=notes,
    )


def collapse(labels: Labels) -> Labels:
    """``labels`` with consecutive repeats made one (a>a>b is a>b)."""
    out: list[str] = []
    for label in labels:
        if not out or out[-1] != label:
            out.append(label)
    return tuple(out)
