"""The maintained views: one line per aggregate class, in the order they are updated."""

from __future__ import annotations

from collections.abc import Callable

from projections.aggregates.attribution import MultiTouchAttribution
from projections.aggregates.attribution_queries import AttributionQueries
from projections.aggregates.base import MaintainedAggregate
from projections.aggregates.conversion_time import ConversionTime
from projections.aggregates.customer_value import Prospects, TopCustomers
from projections.aggregates.data_quality import DataQuality
from projections.aggregates.first_contact import FirstContact
from projections.aggregates.first_contact_queries import FirstContactQueries
from projections.aggregates.funnel import Funnel
from projections.aggregates.paths import TopPaths

AGGREGATE_FACTORIES: list[Callable[[], MaintainedAggregate]] = [
    TopCustomers,
    Prospects,
    MultiTouchAttribution,
    TopPaths,
    FirstContact,
    Funnel,
    ConversionTime,
    DataQuality,
    AttributionQueries,  # the queries with parameters: after the defaults, which answer those first
    FirstContactQueries,
]
