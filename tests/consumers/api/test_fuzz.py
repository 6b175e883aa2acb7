"""The whole API fuzzed from its own OpenAPI schema (schemathesis) over a real SQLite store:
no 5xx, every answer as the schema says (status, content type, body), no partial write.
Bounded: a few examples an operation, the file in well under a minute."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from application.live_views import LiveViews
from application.store_feed import StoreFeed
from consumers.api.app import create_app

EXAMPLES_PER_OPERATION = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def fuzzed_app(store, settings) -> Iterator[Any]:
    """The API as ``touchpoints serve`` runs it: live views fed from the store (an erasure
    waits for them to reach the log's head)."""
    views = LiveViews(background=False)
    app = create_app(store=store, settings=settings, views=views)
    with StoreFeed(store, views):
        yield app


@pytest.mark.timeout(300)  # no hang: a request that never answers fails the test
def test_api__answers_every_generated_request_as_its_schema_says(fuzzed_app, store, auth_headers):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app, headers=auth_headers)
    failures: list[str] = []

    for loaded in schema.get_all_operations():
        operation = loaded.ok()
        try:
            fuzz(operation, store, auth_headers)
        except (Exception, BaseExceptionGroup) as error:  # every operation runs; all failures are shown
            failures.append(f"{operation.label}: {type(error).__name__}: {error}"[:3000])

    assert not failures, "\n\n".join(failures)


def fuzz(operation: Any, store: Any, headers: dict[str, str]) -> None:
    """``EXAMPLES_PER_OPERATION`` generated requests to ``operation``, each checked."""

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def one(case: Any) -> None:
        before = store.count()

        response = case.call_and_validate(headers=headers, checks=CHECKS)

        stored = store.count() - before
        ingest = case.operation.method.upper() == "POST" and case.operation.path == "/v1/events"
        if ingest and response.status_code == 200:
            assert stored == response.json()["accepted"]
        elif case.operation.method.upper() == "POST" and response.status_code >= 400:
            assert stored == 0, f"{response.status_code} answered, yet {stored} events were stored"

    one()
