"""Top conversion paths: the label sequences that led to conversions.

A conversion's path is its touches strictly before the first order (within the
lookback, if given); with ``collapse_repeats`` consecutive repeats become one
(instagram > instagram > email is instagram > email). Rows count conversions
and their value per sequence, most frequent first; conversions without a touch
are counted apart. Non-converting paths (prospects' touches) are counted the
same way. A query over the population.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from projections import parameters
from projections.attribution import Path
from projections.attribution.path_counts import collapse as collapse_labels
from projections.figures import amount, iso, rate
from projections.population import GROUP_BY, Population, conversion_paths

VERSION = 1


def paths_view(
    population: Population,
    *,
    top: object = 20,
    collapse_repeats: object = True,
    lookback_days: object = None,
    group_by: str = "channel",
    start: object = None,
    end: object = None,
) -> dict:
    top = parameters.positive_int("top", top)
    collapse = parameters.flag("collapse_repeats", collapse_repeats)
    lookback = parameters.positive_days("lookback_days", lookback_days)
    group_by = parameters.choice("group_by", group_by, GROUP_BY)
    lower, upper = parameters.window(start, end)
    paths = conversion_paths(
        population, lookback_days=lookback, start=lower, end=upper, group_by=group_by, include_non_converting=True
    )
    converting: dict[tuple[str, ...], list[float]] = {}
    non_converting: dict[tuple[str, ...], int] = {}
    unattributed = 0
    for path in paths:
        sequence = _sequence(path, collapse)
        if path.converted:
            if sequence:
                converting.setdefault(sequence, []).append(path.value)
            else:
                unattributed += 1
        elif sequence:
            non_converting[sequence] = non_converting.get(sequence, 0) + 1
    ranked = sorted(
        ((sequence, len(values), math.fsum(values)) for sequence, values in converting.items()),
        key=ranking,
    )
    return paths_document(
        group_by=group_by,
        collapse_repeats=collapse,
        lookback_days=lookback,
        start=lower,
        end=upper,
        top=top,
        conversions=sum(len(values) for values in converting.values()),
        unattributed_conversions=unattributed,
        distinct_paths=len(converting),
        ranked=ranked[:top],
        prospects=sum(non_converting.values()),
        distinct_non_converting=len(non_converting),
        ranked_non_converting=sorted(non_converting.items(), key=non_converting_ranking)[:top],
    )


def ranking(row: tuple[tuple[str, ...], int, float]) -> tuple:
    """The order of converting paths: ``(sequence, conversions, value)`` rows, most conversions first."""
    sequence, count, value = row
    return -count, -value, sequence


def non_converting_ranking(row: tuple[tuple[str, ...], int]) -> tuple:
    """The order of non-converting paths: ``(sequence, prospects)`` rows, most prospects first."""
    sequence, count = row
    return -count, sequence


def paths_document(
    *,
    group_by: str,
    collapse_repeats: bool,
    lookback_days: float | None,
    start: datetime | None,
    end: datetime | None,
    top: int,
    conversions: int,
    unattributed_conversions: int,
    distinct_paths: int,
    ranked: Iterable[tuple[tuple[str, ...], int, float]],
    prospects: int,
    distinct_non_converting: int,
    ranked_non_converting: Iterable[tuple[tuple[str, ...], int]],
) -> dict:
    """The view's document from its counts and its top rows, in order (parameters checked already)."""
    return {
        "group_by": group_by,
        "collapse_repeats": collapse_repeats,
        "lookback_days": lookback_days,
        "from": iso(start),
        "to": iso(end),
        "top": top,
        "conversions": conversions,
        "unattributed_conversions": unattributed_conversions,
        "distinct_paths": distinct_paths,
        "rows": [
            {"path": list(sequence), "conversions": count, "value": amount(value), "share": rate(count, conversions)}
            for sequence, count, value in ranked
        ],
        "non_converting": {
            "prospects": prospects,
            "distinct_paths": distinct_non_converting,
            "rows": [{"path": list(sequence), "prospects": count} for sequence, count in ranked_non_converting],
        },
    }


def _sequence(path: Path, collapse: bool) -> tuple[str, ...]:
    labels = tuple(label for label, _ in path.touches)
    return collapse_labels(labels) if collapse else labels
