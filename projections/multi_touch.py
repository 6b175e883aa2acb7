"""Multi-touch attribution over conversion paths (models in ``projections.attribution``).

Paths come from ``population.conversion_paths``: conversions are filtered by
their occurred_at in ``[from, to)``; the non-converting paths the Markov and
Shapley models also read are the prospects whose LAST touch falls in the same
window (unfiltered when no window is given). Credits are in conversions and in
conversion value (the revenue of the first order). The document's
``conversions``/``value`` are the ATTRIBUTED totals the rows add up to;
conversions without a touch are ``unattributed_conversions``/``unattributed_value``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from projections import parameters
from projections.attribution import MODELS, Attribution, attribute_all
from projections.figures import amount, credit, iso
from projections.population import GROUP_BY, Population, conversion_paths

VERSION = 1
READS_NON_CONVERTING = frozenset({"markov", "shapley"})


def attribution_view(
    population: Population,
    *,
    model: str,
    lookback_days: object = None,
    start: object = None,
    end: object = None,
    group_by: str = "channel",
    half_life_days: object = 7.0,
) -> dict:
    return attribution_views(
        population,
        models=(model,),
        lookback_days=lookback_days,
        start=start,
        end=end,
        group_by=group_by,
        half_life_days=half_life_days,
    )[model]


def attribution_views(
    population: Population,
    *,
    models: Sequence[str] = MODELS,
    lookback_days: object = None,
    start: object = None,
    end: object = None,
    group_by: str = "channel",
    half_life_days: object = 7.0,
) -> dict[str, dict]:
    """Several models over the same paths (built and checked once)."""
    for model in models:
        parameters.choice("model", model, MODELS)
    lookback = parameters.positive_days("lookback_days", lookback_days)
    half_life = parameters.positive_days("half_life_days", half_life_days, optional=False)
    group_by = parameters.choice("group_by", group_by, GROUP_BY)
    lower, upper = parameters.window(start, end)
    results: dict[str, Attribution] = {}
    non_converting = 0
    # Heuristic models get the converting paths only, so their rows (one per label
    # seen in the input) are the same whether asked alone or with the others.
    for reads_all in (False, True):
        chosen = [model for model in models if (model in READS_NON_CONVERTING) == reads_all]
        if not chosen:
            continue
        paths = conversion_paths(
            population,
            lookback_days=lookback,
            start=lower,
            end=upper,
            group_by=group_by,
            include_non_converting=reads_all,
        )
        results.update(attribute_all(paths, chosen, half_life_days=half_life))
        if reads_all:
            non_converting = sum(1 for path in paths if not path.converted and path.touches)
    return {
        model: attribution_document(
            results[model],
            lookback_days=lookback,
            group_by=group_by,
            start=lower,
            end=upper,
            half_life_days=half_life,
            non_converting_paths=non_converting,
        )
        for model in models
    }


def attribution_document(
    result: Attribution,
    *,
    lookback_days: float | None,
    group_by: str,
    start: datetime | None,
    end: datetime | None,
    half_life_days: float,
    non_converting_paths: int,
) -> dict:
    """The view's document of one model's result (parameters checked already)."""
    model = result.model
    document = {
        "model": model,
        "lookback_days": lookback_days,
        "group_by": group_by,
        "from": iso(start),
        "to": iso(end),
    }
    if model == "time_decay":
        document["half_life_days"] = half_life_days
    if model in READS_NON_CONVERTING:
        document["non_converting_paths"] = non_converting_paths
    return document | _totals(result, group_by)


def _totals(result: Attribution, group_by: str) -> dict:
    rows = sorted(result.credits.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))
    return {
        "conversions": result.conversions,
        "value": amount(result.value),
        "unattributed_conversions": result.unattributed_conversions,
        "unattributed_value": amount(result.unattributed_value),
        "notes": list(result.notes),
        "rows": [
            {group_by: label, "conversions": credit(conversions), "value": amount(value)}
            for label, (conversions, value) in rows
        ],
    }
