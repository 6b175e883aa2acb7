"""The OpenAPI document says what the server answers."""

from __future__ import annotations

import pytest

from application.live_views import LiveViews
from consumers.api.app import create_app
from events.registry import REGISTRY


@pytest.fixture
def document(store, settings):
    return create_app(store=store, settings=settings, views=LiveViews(background=False)).openapi()


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def schema_of(response):
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def test_a_bad_parameter__is_documented_as_the_apps_error_shape_not_fastapis(document):
    parameter_errors = {label: schema_of(op["responses"]["422"]) for label, op in operations(document)
                        if "422" in op["responses"] and label != "POST /v1/events"}

    assert "GET /v1/attribution" in parameter_errors and "GET /v1/events" in parameter_errors
    assert "#/components/schemas/HTTPValidationError" not in parameter_errors.values()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    shape = document["components"]["schemas"]["InvalidParameters"]
    assert {"error", "detail", "invalid"} <= set(shape["properties"])


def test_every_route__documents_the_host_refusal(document):
    assert all("421" in operation["responses"] for _, operation in operations(document))


def test_ingest__takes_one_event_or_an_array_each_one_of_the_registered_types(document):
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    one, many = body["application/json"]["schema"]["oneOf"]

    assert many["items"] == one and many["minItems"] == 1
    assert one["discriminator"]["propertyName"] == "type"
    assert set(one["discriminator"]["mapping"]) == set(REGISTRY.names())
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in one["oneOf"]} <= set(document["components"]["schemas"])
    assert "application/x-ndjson" in body


def test_ingest__documents_the_conflict_the_timeout_and_the_capped_422(document):
    responses = document["paths"]["/v1/events"]["post"]["responses"]
    schemas = document["components"]["schemas"]

    assert schema_of(responses["409"]) == "#/components/schemas/ConflictingDuplicates"
    assert {"conflicts", "conflict_count"} <= set(schemas["ConflictingDuplicates"]["properties"])
    assert "408" in responses and "415" in responses
    assert "invalid_count" in schemas["InvalidEvents"]["properties"]


def test_view_routes__document_csv_and_the_maximum_lookback(document):
    attribution = document["paths"]["/v1/attribution"]["get"]
    lookback = next(p for p in attribution["parameters"] if p["name"] == "lookback_days")

    assert "text/csv" in attribution["responses"]["200"]["content"]
    assert "36525" in repr(lookback["schema"])
