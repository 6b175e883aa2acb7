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

from projections import parameters
from projections.attribution import Path
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
    attributed = sum(len(values) for values in converting.values())
    ranked = sorted(
        ((sequence, len(values), math.fsum(values)) for sequence, values in converting.items()),
        key=lambda row: (-row[1], -row[2], row[0]),
    )
    return {
        "group_by": group_by,
        "collapse_repeats": collapse,
        "lookback_days": lookback,
        "from": iso(lower),
        "to": iso(upper),
        "top": top,
        "conversions": attributed,
        "unattributed_conversions": unattributed,
        "distinct_paths": len(converting),
        "rows": [
            {"path": list(sequence), "conversions": count, "value": amount(value), "share": rate(count, attributed)}
            for sequence, count, value in ranked[:top]
        ],
        "non_converting": {
            "prospects": sum(non_converting.values()),
            "distinct_paths": len(non_converting),
            "rows": [
                {"path": list(sequence), "prospects": count}
                for sequence, count in sorted(non_converting.items(), key=lambda item: (-item[1], item[0]))[:top]
            ],
        },
    }


def _sequence(path: Path, collapse: bool) -> tuple[str, ...]:
    labels: Iterable[str] = (label for label, _ in path.touches)
    if not collapse:
        return tuple(labels)
    out: list[str] = []
    for label in labels:
        if not out or out[-1] != label:
            out.append(label)
    return tuple(out)
