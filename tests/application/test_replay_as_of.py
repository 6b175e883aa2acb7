"""Point-in-time views: as_of (when events occurred) and known_at (when the log recorded them).

A real SQLite store whose clock the test sets: February's events are recorded on
1 March, more events (two of them late February arrivals) on 5 March.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consumers.api.app import create_app
from consumers.cli.main import main
from application.ingest import Ingestor
from application.live_views import LiveViews
from application.replay import PointInTimeViews, point_in_time, replay
from application.replay_report import compute_views
from application.settings import Settings
from application.store_feed import StoreFeed, load_views
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from projections.parameters import ViewParameterError
from tests.conftest import admin_headers

MARCH_1 = datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc)
MARCH_5 = datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc)


def touch(who: str, at: str, channel: str = "instagram", **fields) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "ad_clicked", "occurred_at": at, "anonymous_id": who,
            "channel": channel, **fields}


def order(customer: str, at: str, revenue: str = "50.00") -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "order_placed", "occurred_at": at, "customer_id": customer,
            "data": {"order_id": f"o-{uuid.uuid4().hex[:8]}", "revenue": revenue, "currency": "EUR"}}


def link(anonymous: str, customer: str, at: str) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "identity_linked", "occurred_at": at,
            "anonymous_id": anonymous, "customer_id": customer}


FEBRUARY = [
    touch("cookie:anna", "2024-02-03T09:00:00Z"),
    link("cookie:anna", "anna", "2024-02-10T12:00:00Z"),
    order("anna", "2024-02-10T12:05:00Z"),
    touch("cookie:ben", "2024-02-12T08:00:00Z", channel="google_ads"),
    touch("cookie:cleo", "2024-02-20T18:30:00Z", channel="email"),
]
LATER = [
    touch("cookie:dora", "2024-02-27T11:00:00Z", channel="tiktok"),  # late: occurred in February
    order("ben", "2024-02-29T23:59:59Z", revenue="20.00"),  # late, and the last second of February
    link("cookie:ben", "ben", "2024-02-28T10:00:00Z"),  # late
    touch("cookie:emil", "2024-03-02T10:00:00Z", channel="email"),
    order("anna", "2024-03-03T15:00:00Z", revenue="80.00"),
]


class Clock:
    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> Clock:
    return Clock(MARCH_1)


@pytest.fixture
def store(tmp_path: Path, clock: Clock):
    with SQLiteEventStore(tmp_path / "events.db", clock=clock) as opened:
        yield opened


def ingest(store: SQLiteEventStore, bodies: list[dict]) -> None:
    Ingestor(store).append([REGISTRY.validate(body) for body in bodies])


@pytest.fixture
def two_batches(store: SQLiteEventStore, clock: Clock) -> SQLiteEventStore:
    ingest(store, FEBRUARY)
    clock.moment = MARCH_5
    ingest(store, LATER)
    return store


def funnel_at(store: SQLiteEventStore, **when) -> dict:
    result = replay(store, **when)
    return compute_views(result.population, result.now, ["funnel"])["funnel"]


# --- the two clocks ---------------------------------------------------------------------------------


def test_known_at__leaves_out_events_recorded_later_even_if_they_occurred_before(two_batches):
    result = replay(two_batches, known_at="2024-03-01")

    assert result.events_replayed == len(FEBRUARY)
    assert result.after_known_at == len(LATER)


def test_as_of__keeps_late_events_that_occurred_by_then(two_batches):
    result = replay(two_batches, as_of="2024-02-29")

    assert result.events_replayed == len(FEBRUARY) + 3
    assert result.after_as_of == 2


def test_as_of_and_known_at__what_we_knew_on_1_march_about_february(two_batches):
    known_then = funnel_at(two_batches, as_of="2024-02-29", known_at="2024-03-01")
    known_now = funnel_at(two_batches, as_of="2024-02-29")

    assert (known_then["reached"], known_then["converted"]) == (3, 1)
    assert (known_now["reached"], known_now["converted"]) == (4, 2)


def test_as_of__a_date_includes_the_last_microsecond_of_that_day(two_batches):
    result = replay(two_batches, as_of="2024-02-29")

    assert result.by_type["order_placed"] == 2  # ben's order at 23:59:59


def test_as_of__a_time_is_inclusive(two_batches):
    result = replay(two_batches, as_of="2024-02-29T23:59:59Z")
    before = replay(two_batches, as_of="2024-02-29T23:59:58.999999Z")

    assert result.events_replayed == before.events_replayed + 1


def test_as_of__is_the_now_of_the_views_and_known_at_alone_keeps_data_time(two_batches):
    assert replay(two_batches, as_of="2024-02-29").now == datetime(2024, 2, 29, 23, 59, 59, 999999, timezone.utc)
    assert replay(two_batches, known_at="2024-03-01").now == datetime(2024, 2, 20, 18, 30, tzinfo=timezone.utc)


# --- replay at a known time equals what the live views showed then ------------------------------------


def test_replay_at_a_known_time_equals_the_live_views_captured_at_that_time(store, clock):
    with LiveViews(background=False) as live, StoreFeed(store, live, poll_interval=0.01) as feed:
        ingest(store, FEBRUARY)
        assert feed.wait_until_caught_up(10)
        captured = live.all_documents()
        clock.moment = MARCH_5
        ingest(store, LATER)
        assert feed.wait_until_caught_up(10)
        latest = live.all_documents()

    result = replay(store, known_at=MARCH_1)
    replayed = compute_views(result.population, result.now)

    assert replayed == captured
    assert replayed != latest


def test_replay_without_a_point_in_time_equals_the_live_views(two_batches):
    live = load_views(two_batches)

    result = replay(two_batches)

    assert compute_views(result.population, result.now) == live.all_documents()


# --- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-03-01", datetime(2024, 3, 1, 23, 59, 59, 999999, timezone.utc)),
    ("2024-03-01T12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=timezone.utc)),
    ("2024-03-01T13:00:00+01:00", datetime(2024, 3, 1, 12, tzinfo=timezone.utc)),
    ("2024-03-01T12:00:00.5-02:30", datetime(2024, 3, 1, 14, 30, 0, 500000, timezone.utc)),
])
def test_point_in_time__accepts_rfc3339_with_offset_or_a_date_meaning_its_end(text, expected):
    assert point_in_time("as_of", text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("2024-03-01T12:00:00", "offset"),
    ("2024-02-30", "calendar date"),
    ("yesterday", "RFC 3339"),
])
def test_point_in_time__refuses_ambiguous_or_bad_values_naming_the_parameter(text, reason):
    with pytest.raises(ViewParameterError) as caught:
        point_in_time("known_at", text)

    assert caught.value.param == "known_at"
    assert reason in caught.value.reason


# --- the API and the CLI -------------------------------------------------------------------------------


@pytest.fixture
def client(two_batches, tmp_path):
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO": "0"})
    with TestClient(create_app(store=two_batches, settings=settings, views=load_views(two_batches)),
                    headers=admin_headers(settings.data)) as api:
        yield api


def test_api__known_at_answers_the_replayed_document(client, two_batches):
    response = client.get("/v1/funnel", params={"known_at": "2024-03-01"})

    assert response.status_code == 200
    assert response.json() == funnel_at(two_batches, known_at="2024-03-01")
    assert response.json() != client.get("/v1/funnel").json()


def test_api__as_of_and_known_at_together(client, two_batches):
    response = client.get("/v1/funnel", params={"as_of": "2024-02-29", "known_at": "2024-03-01T10:00:00Z"})

    assert response.json() == funnel_at(two_batches, as_of="2024-02-29", known_at="2024-03-01")


def test_api__a_point_in_time_answer_carries_no_etag(client):
    response = client.get("/v1/first-contact", params={"as_of": "2024-02-29"})

    assert "etag" not in response.headers
    assert "etag" in client.get("/v1/first-contact").headers


def test_api__a_time_without_offset_is_422_naming_the_parameter(client):
    response = client.get("/v1/funnel", params={"known_at": "2024-03-01T10:00:00"})

    assert response.status_code == 422
    assert response.json()["invalid"][0]["parameter"] == "known_at"


def test_api__timeline_as_of_lists_only_the_events_that_occurred_by_then(client):
    body = client.get("/v1/customers/anna/timeline", params={"as_of": "2024-02-29"}).json()

    assert [event["type"] for event in body["events"]] == ["ad_clicked", "identity_linked", "order_placed"]


def test_point_in_time_views__are_cached_until_the_log_grows(two_batches, clock):
    views_at = PointInTimeViews(two_batches)
    as_of = point_in_time("as_of", "2024-02-29")

    first = views_at(as_of, None)
    again = views_at(as_of, None)
    clock.moment = datetime(2024, 3, 6, tzinfo=timezone.utc)
    ingest(two_batches, [touch("cookie:finn", "2024-02-01T00:00:00Z")])
    after_a_late_event = views_at(as_of, None)

    assert again is first
    assert views_at.replays == 2
    assert after_a_late_event.document("funnel")["reached"] == first.document("funnel")["reached"] + 1


def test_cli_views__known_at_is_the_api_document(client, two_batches, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TOUCHPOINTS_DATA", str(tmp_path / "data"))

    code = main(["first-contact", "--known-at", "2024-03-01", "--format", "json", "--store",
                 f"sqlite:///{two_batches.path}"])

    assert code == 0
    assert json.loads(capsys.readouterr().out) == client.get("/v1/first-contact",
                                                              params={"known_at": "2024-03-01"}).json()
