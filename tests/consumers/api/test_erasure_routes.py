"""``POST /v1/erasures`` over the real API: a person erased, their values gone from every answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from application.settings import Settings
from application.store_feed import load_views
from consumers.api.app import create_app
from events.sqlite.store import SQLiteEventStore
from application.demo import generate
from consumers.api.ingest_decode import POOL_MIN_BYTES
from tests.application.privacy.test_erasure import (
    COOKIE, CUSTOMER, EMAIL, HANDLE, IDENTIFIERS, INSTAGRAM, TICKET_TEXT, anna,
)
from tests.conftest import bearer, make_key


@pytest.fixture
def sealed_settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO": "0",
                              "TOUCHPOINTS_SEAL_PERSONAL_DATA": "1", "TOUCHPOINTS_SEAL_CUSTOMER_IDS": "1"})


@pytest.fixture
def api(sealed_settings: Settings) -> Iterator[TestClient]:
    """Anna's events POSTed, then an API serving views folded from the store."""
    store = SQLiteEventStore(sealed_settings.data / "events.db")
    admin = bearer(make_key(sealed_settings.data, "admin"))
    with TestClient(create_app(store=store, settings=sealed_settings), headers=admin) as client:
        posted = client.post("/v1/events", content=orjson.dumps(anna()), headers={"Content-Type": "application/json"})
        assert posted.status_code == 200, posted.text
    with TestClient(create_app(store=store, settings=sealed_settings, views=load_views(store)), headers=admin) as client:
        yield client
    store.close()
    sealed_settings.sealing.close()


def found(response_text: str) -> list[str]:
    return [identifier for identifier in IDENTIFIERS if identifier in response_text]


def test_erasures__an_admin_erases_a_person_and_is_told_what_went(api):
    response = api.post("/v1/erasures", json={"identity": EMAIL})

    body = response.json()
    assert response.status_code == 200
    assert body["keys_destroyed"] == 4 and body["events"] == len(anna()) and body["journal_emptied"]
    assert [text for text in found(response.text) if text not in EMAIL] == []  # the request's own id, echoed


def test_erasures__the_timeline_shows_values_before_and_none_after(api):
    before = api.get(f"/v1/customers/{CUSTOMER}/timeline")

    api.post("/v1/erasures", json={"identity": CUSTOMER})
    after = api.get(f"/v1/customers/{CUSTOMER}/timeline")

    assert before.status_code == 200 and sorted(found(before.text)) == sorted(IDENTIFIERS)
    assert after.status_code == 200 and found(after.text) == []


def test_erasures__the_log_read_back_keeps_the_events_as_stored_and_opens_no_value_after_erasure(api):
    before = api.get("/v1/events", params={"limit": 100}).json()["events"]

    api.post("/v1/erasures", json={"identity": CUSTOMER})
    after = api.get("/v1/events", params={"limit": 100})

    assert len(before) == len(anna()) and found(orjson.dumps([event["event"] for event in before]).decode()) == []
    assert after.status_code == 200 and found(after.text) == []
    assert [event["event"] for event in after.json()["events"][: len(before)]] == [event["event"] for event in before]


def test_erasures__an_unknown_identity_is_404(api):
    response = api.post("/v1/erasures", json={"identity": "nobody@example.org"})

    assert response.status_code == 404 and response.json()["error"] == "unknown_identity"


def test_erasures__a_read_key_may_not_erase(api, sealed_settings):
    response = api.post("/v1/erasures", json={"identity": EMAIL},
                        headers=bearer(make_key(sealed_settings.data, "read")))

    assert response.status_code == 403


def test_erasures__the_log_read_back_opens_each_sealed_value_beside_the_stored_event(api):
    response = api.get("/v1/events", params={"limit": 100})

    opened = [event["personal"] for event in response.json()["events"] if "personal" in event]
    assert len(opened) == len(anna())
    assert {value for personal in opened for value in personal.values()} == {CUSTOMER, COOKIE, EMAIL, INSTAGRAM,
                                                                             HANDLE, TICKET_TEXT}


def test_erasures__a_body_decoded_in_a_worker_process_is_sealed_with_the_keys_this_process_opens(tmp_path):
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO": "0",
                                  "TOUCHPOINTS_SEAL_PERSONAL_DATA": "1", "TOUCHPOINTS_INGEST_WORKERS": "1"})
    store = SQLiteEventStore(tmp_path / "events.db")
    body = orjson.dumps([*generate(60, 5), *anna()])
    assert len(body) > POOL_MIN_BYTES
    admin = bearer(make_key(tmp_path, "admin"))
    with TestClient(create_app(store=store, settings=settings), headers=admin) as client:
        posted = client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
    with TestClient(create_app(store=store, settings=settings, views=load_views(store)), headers=admin) as client:
        timeline = client.get(f"/v1/customers/{EMAIL}/timeline")

    store.close()
    settings.sealing.close()
    assert posted.status_code == 200 and timeline.status_code == 200
    assert sorted(found(timeline.text)) == sorted(IDENTIFIERS)
    stored = (tmp_path / "events.db").read_bytes()
    assert [identifier for identifier in IDENTIFIERS if identifier.encode() in stored] == [CUSTOMER]  # not personal here
