"""The API right after a restart: the saved default documents are served at once, marked
as restored, and the live views take over once caught up (LiveViews.restore_documents)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from application.live_views import LiveViews
from application.settings import Settings
from application.store_feed import StoreFeed, load_views
from application.view_documents import documents_path, read_documents, write_documents
from consumers.api.app import create_app
from events.sqlite.store import SQLiteEventStore
from tests.conftest import admin_headers

POSITION = "X-Touchpoints-Position"


@pytest.fixture(scope="module")
def store(demo_store_path: Path):
    store = SQLiteEventStore(demo_store_path)
    yield store
    store.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO": "0"})


@pytest.fixture
def saved(store, settings) -> Path:
    """Given: the views of the whole store, saved by the process that served them."""
    path = documents_path(settings.data)
    previous = load_views(store, documents_path=path)
    previous.refresh()
    previous.close()
    return path


def restarted_api(store, settings, views: LiveViews) -> TestClient:
    views.restore_documents(head=store.head_position())
    return TestClient(create_app(store=store, settings=settings, views=views), headers=admin_headers(settings.data))


def test_restarted_api__serves_the_saved_documents_at_their_position_before_the_views_load(store, settings, saved):
    with restarted_api(store, settings, LiveViews(background=False, documents_path=saved)) as client:
        answer = client.get("/v1/funnel")
        health = client.get("/healthz").json()

    assert answer.status_code == 200
    assert answer.headers[POSITION] == str(store.head_position())
    assert answer.json()["reached"] > 0
    views = health["components"]["views"]
    assert views["status"] == "restored"
    assert views["at_head"] is True
    assert views["live"]["identities"] == 0
    assert health["status"] == "ok" and health["ready"] is False


def test_restarted_api__other_parameters_answer_503_with_retry_after(store, settings, saved):
    with restarted_api(store, settings, LiveViews(background=False, documents_path=saved)) as client:
        answer = client.get("/v1/attribution", params={"lookback_days": 3})
        timeline = client.get("/v1/customers/c-1/timeline")

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"
    assert answer.json()["error"] == "views_loading"
    assert timeline.status_code == 503


def test_restarted_api__documents_of_an_older_version_are_reported_as_rebuilding(store, settings, saved):
    old = read_documents(saved)
    write_documents(saved, version="0.0.0", data_time=old.data_time, saved_at=old.saved_at,
                    documents=[(item.key, item.position, item.encoded) for item in old.documents])

    with restarted_api(store, settings, LiveViews(background=False, documents_path=saved)) as client:
        views = client.get("/healthz").json()["components"]["views"]
        answer = client.get("/v1/paths")

    assert views["status"] == "rebuilding"
    assert views["restored"]["version"] == "0.0.0"
    assert views["at_head"] is False
    assert answer.status_code == 200


def test_restarted_api__the_store_feed_catches_up_and_the_live_views_take_over(store, settings, saved):
    views = LiveViews(refresh_delay=0.01, documents_path=saved)
    with restarted_api(store, settings, views) as client, StoreFeed(store, views):
        deadline = time.monotonic() + 60
        while views.restored_status() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        health = client.get("/healthz").json()["components"]["views"]
        answer = client.get("/v1/attribution", params={"lookback_days": 3})
        funnel = client.get("/v1/funnel")
    views.close()

    assert views.restored_status() is None
    assert health["status"] == "ok"
    assert answer.status_code == 200
    assert funnel.headers[POSITION] == str(store.head_position())
    assert funnel.json() == load_views(store).document("funnel")
