"""The read API and analytics consent: a person who withdrew it is not listed and their
timeline answers 451, from the withdrawal on; as of an earlier moment, or after a new grant,
they are shown."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from application.ingest import Ingestor
from application.settings import Settings
from application.store_feed import load_views
from consumers.api.app import create_app
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from tests.conftest import bearer, make_key

BEFORE_WITHDRAWAL = "2024-02-15"


def event(type_: str, at: str, **fields) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": type_, "occurred_at": at, **fields}


def analytics(granted: bool, at: str) -> dict:
    return event("consent_changed", at, customer_id="ann", data={"purpose": "analytics", "granted": granted})


HISTORY = [
    event("page_viewed", "2024-01-01T10:00:00Z", anonymous_id="cookie:ann", channel="seo"),
    event("identity_linked", "2024-01-02T10:00:00Z", anonymous_id="cookie:ann", customer_id="ann"),
    event("order_placed", "2024-01-03T10:00:00Z", customer_id="ann",
          data={"order_id": "o-ann", "revenue": "300.00", "currency": "EUR"}),
    event("order_placed", "2024-01-04T10:00:00Z", customer_id="bob",
          data={"order_id": "o-bob", "revenue": "100.00", "currency": "EUR"}),
    analytics(False, "2024-03-01T10:00:00Z"),
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[SQLiteEventStore, Settings]]:
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO": "0"})
    with SQLiteEventStore(tmp_path / "events.db") as store:
        Ingestor(store).append([REGISTRY.validate(body) for body in HISTORY])
        yield store, settings


def client(served, *scopes: str) -> TestClient:
    store, settings = served
    app = create_app(store=store, settings=settings, views=load_views(store))
    return TestClient(app, headers=bearer(make_key(settings.data, *scopes, name="-".join(scopes))))


def test_timeline__a_read_key_gets_451_consent_withdrawn(served):
    with client(served, "read") as api:
        response = api.get("/v1/customers/ann/timeline")

    assert response.status_code == 451
    assert response.json()["error"] == "consent_withdrawn" and "2024-03-01T10:00:00Z" in response.json()["detail"]


def test_timeline__any_linked_identity_is_refused_alike(served):
    with client(served, "read") as api:
        assert api.get("/v1/customers/cookie:ann/timeline").status_code == 451


def test_timeline__an_audit_key_as_of_before_the_withdrawal_sees_it_as_it_was(served):
    with client(served, "read", "audit") as api:
        before = api.get("/v1/customers/ann/timeline", params={"as_of": BEFORE_WITHDRAWAL})
        now = api.get("/v1/customers/ann/timeline")

    assert before.status_code == 200 and before.json()["order_count"] == 1
    assert now.status_code == 451


def test_timeline__a_new_grant_shows_it_again(served):
    store, _ = served
    Ingestor(store).append([REGISTRY.validate(analytics(True, "2024-04-01T10:00:00Z"))])

    with client(served, "read") as api:
        response = api.get("/v1/customers/ann/timeline")

    assert response.status_code == 200 and response.json()["consents"]["analytics"]["granted"] is True


def test_top_customers__the_person_is_counted_not_listed_and_as_of_before_listed(served):
    with client(served, "read", "audit") as api:
        now = api.get("/v1/customers/top").json()
        before = api.get("/v1/customers/top", params={"as_of": BEFORE_WITHDRAWAL}).json()

    assert [row["identity"] for row in now["rows"]] == ["customer-bob"]
    assert (now["customers"], now["revenue"], now["consent_withdrawn"]) == (2, 400.0, 1)
    assert [row["identity"] for row in before["rows"]] == ["customer-ann", "customer-bob"]
