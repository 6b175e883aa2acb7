"""The views: what the HTTP API, the CLI, the dashboard and the audit ask for.

Every function takes the population (``projections.population``) and returns a
JSON-ready dict (the HTTP API returns exactly these documents). Bad parameters
raise `ViewParameterError` (a ``ValueError`` naming the parameter). Counts are
ints; money is rounded to 2 decimals, days to 3, rates and fractional credits
to 4, times are ISO 8601 UTC strings: the documents are deterministic, so the
audit can digest them. Definitions live in each view's module docstring.
"""

from __future__ import annotations

from projections import (
    conversion_time,
    customer_value,
    data_quality,
    first_contact,
    multi_touch,
    population,
    timeline,
    top_paths,
)
from projections.attribution import MODELS
from projections.conversion_time import conversion_time_view
from projections.customer_value import funnel_view, prospects_view, top_customers_view
from projections.data_quality import data_quality_view
from projections.first_contact import first_contact_view
from projections.multi_touch import attribution_view, attribution_views
from projections.parameters import ViewParameterError
from projections.population import Population
from projections.timeline import timeline_view
from projections.top_paths import paths_view

__all__ = [
    "MODELS",
    "VERSION",
    "VERSIONS",
    "ViewParameterError",
    "all_views",
    "attribution_view",
    "attribution_views",
    "conversion_time_view",
    "data_quality_view",
    "first_contact_view",
    "funnel_view",
    "paths_view",
    "prospects_view",
    "timeline_view",
    "top_customers_view",
]

VERSIONS = {
    module.__name__.rsplit(".", 1)[1]: module.VERSION
    for module in (
        population,
        first_contact,
        conversion_time,
        multi_touch,
        top_paths,
        customer_value,
        data_quality,
        timeline,
    )
}
VERSION = sum(VERSIONS.values())
"""Grows whenever any view's output (or the population's) changes: stored views are rebuilt."""


def all_views(population: Population, *, now: object) -> dict[str, dict]:
    """Every population-wide view with its default parameters, every attribution
    model included: what the audit replay digests."""
    documents = {
        "funnel": funnel_view(population),
        "first_contact_by_channel": first_contact_view(population, group_by="channel"),
        "first_contact_by_campaign": first_contact_view(population, group_by="campaign"),
        "conversion_time": conversion_time_view(population, now=now),
    }
    for model, document in attribution_views(population, models=MODELS).items():
        documents[f"attribution_{model}"] = document
    documents["paths"] = paths_view(population)
    documents["top_customers"] = top_customers_view(population, now=now)
    documents["prospects"] = prospects_view(population, now=now)
    documents["data_quality"] = data_quality_view(population)
    return documents
