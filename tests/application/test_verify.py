"""``verify``: the hash chain of a clean log, noted heads, and the live views against a replay."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.api.app import create_app
from tests.conftest import make_key
from application.ingest import Ingestor
from application.live_views import LiveViews
from application.replay_report import VIEW_NAMES
from application.settings import Settings
from application.store_feed import StoreFeed, load_views
from application.verify import parse_head, verify_log
from application.verify_views import API_ROUTES, compare_with_live_views, render
from events.logged import LoggedEvent
from events.registry import REGISTRY, decode_recorded
from events.times import EPOCH
from events.sqlite.store import SQLiteEventStore
from tests.consumers.helpers import PortOnly, cli



def copy_store(source: Path, target: Path) -> Path:
    """A consistent copy of a SQLite store (through SQLite's backup API)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


@pytest.fixture
def demo_copy(demo_store_path: Path, tmp_path: Path) -> Path:
    return copy_store(demo_store_path, tmp_path / "events.db")


@pytest.fixture
def demo(demo_copy: Path) -> Iterator[SQLiteEventStore]:
    with SQLiteEventStore(demo_copy) as store:
        yield store


def add_events(store: SQLiteEventStore, count: int) -> None:
    bodies = [{"event_id": str(uuid.uuid4()), "type": "page_viewed", "occurred_at": "2024-12-31T12:00:00Z",
               "anonymous_id": f"cookie:late-{n}", "channel": "direct"} for n in range(count)]
    Ingestor(store).append([REGISTRY.validate(body) for body in bodies])


# --- the chain of a clean log ----------------------------------------------------------------------------


def test_verify__a_clean_log_passes_with_the_stored_head_hash(demo):
    stored = list(demo.read_all())

    report = verify_log(demo)

    assert report.ok and report.findings == []
    assert (report.events, report.first_position, report.last_position) == (len(stored), 1, stored[-1].position)
    assert report.head_hash == stored[-1].hash


def test_verify__through_the_port_reports_the_same_head(demo):
    assert verify_log(PortOnly(demo)).as_dict() == verify_log(demo).as_dict()


def test_verify__an_empty_log_passes(store):
    report = verify_log(store)

    assert report.ok and report.events == 0 and report.last_position is None


def test_verify__a_noted_head_still_in_a_grown_log_passes_naming_the_events_since(demo):
    noted = verify_log(demo).head_hash.hex()
    add_events(demo, 3)

    report = verify_log(demo, expect_head=noted)

    assert report.ok
    assert report.appended_since_expected == 3


def test_verify__a_noted_head_missing_from_the_log_is_reported_as_truncation(demo):
    report = verify_log(demo, expect_head="ab" * 32)

    assert not report.ok
    assert report.findings[0].kind == "truncated"
    assert report.findings[0].position == report.last_position + 1


@pytest.mark.parametrize("text", ["xyz", "ab" * 31, "sha256:" + "g" * 64])
def test_parse_head__refuses_anything_but_64_hex_digits(text):
    with pytest.raises(ValueError, match="64 hex digits"):
        parse_head(text)


# --- the command -----------------------------------------------------------------------------------------


def test_verify_cli__a_clean_log_exits_0_and_prints_the_same_head_twice(capsys, demo_copy):
    first = cli(capsys, "verify", "--store", f"sqlite:///{demo_copy}")
    second = cli(capsys, "verify", "--store", f"sqlite:///{demo_copy}")

    assert first[0] == 0 and first[1] == second[1]
    with SQLiteEventStore(demo_copy) as store:
        head = list(store.read_all())[-1].hash.hex()
    assert f"head hash {head}" in first[1]
    assert "OK" in first[1]


def test_verify_cli__json_output_carries_the_report(capsys, demo_copy):
    code, out, _ = cli(capsys, "verify", "--store", f"sqlite:///{demo_copy}", "--format", "json")

    body = json.loads(out)
    assert code == 0
    assert body["ok"] is True and body["problems"] == 0 and len(body["head_hash"]) == 64


def test_verify_cli__a_malformed_noted_head_exits_2(capsys, demo_copy):
    code, _, err = cli(capsys, "verify", "--store", f"sqlite:///{demo_copy}", "--expect-head", "nope")

    assert code == 2
    assert "--expect-head" in err


def test_verify_cli__a_noted_head_that_is_gone_exits_1(capsys, demo_copy):
    code, out, _ = cli(capsys, "verify", "--store", f"sqlite:///{demo_copy}", "--expect-head", "cd" * 32)

    assert code == 1
    assert "truncated" in out


# --- the live views against a replay ----------------------------------------------------------------------


def test_verify_views__live_views_fed_from_the_store_equal_a_replay(demo):
    with LiveViews(background=False) as live, StoreFeed(demo, live, poll_interval=0.01) as feed:
        assert feed.wait_until_caught_up(30)
        comparison = compare_with_live_views(demo, live)

    assert comparison.same
    assert [view.name for view in comparison.views] == list(VIEW_NAMES)
    assert comparison.position == demo.head_position()


def test_verify_views__a_live_view_that_differs_from_the_log_is_named(demo):
    live = load_views(demo)
    stray = REGISTRY.validate({"event_id": str(uuid.uuid4()), "type": "ad_clicked", "anonymous_id": "cookie:stray",
                               "occurred_at": "2023-05-01T00:00:00Z", "channel": "tiktok"})
    live.apply_events([LoggedEvent(live.position, EPOCH, stray.stream, stray)])  # never stored

    comparison = compare_with_live_views(demo, live, attempts=1)

    assert not comparison.same
    assert "funnel" in comparison.differing and "first_contact_by_channel" in comparison.differing


def test_verify_views__a_report_names_what_each_earlier_attempt_found_different(demo):
    # given live views holding an event the log does not
    live = load_views(demo)
    stray = REGISTRY.validate({"event_id": str(uuid.uuid4()), "type": "ad_clicked", "anonymous_id": "cookie:stray",
                               "occurred_at": "2023-05-01T00:00:00Z", "channel": "tiktok"})
    live.apply_events([LoggedEvent(live.position, EPOCH, stray.stream, stray)])

    # when they are compared twice
    comparison = compare_with_live_views(demo, live, attempts=2, wait=0.0)

    # then the report of the second attempt says what the first found too
    assert comparison.attempts == 2
    assert [found["attempt"] for found in comparison.earlier] == [1]
    assert comparison.earlier[0]["differing"] == comparison.differing
    assert comparison.as_dict()["earlier"] == comparison.earlier
    assert "attempt 1 at position" in render(comparison)


def test_verify_views_cli__the_cli_views_equal_a_replay(capsys, demo_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("TOUCHPOINTS_DATA", str(tmp_path / "data"))

    code, out, _ = cli(capsys, "verify", "--views", "--store", f"sqlite:///{demo_copy}")

    assert code == 0
    assert f"all {len(VIEW_NAMES)} views equal" in out


def test_api_routes__cover_every_view_the_replay_writes():
    assert set(API_ROUTES) == set(VIEW_NAMES)


@pytest.mark.slow
def test_verify_views_cli__a_running_server_serves_the_replayed_views(capsys, demo, serve_app, tmp_path,
                                                                       monkeypatch):
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO": "0"})
    monkeypatch.setenv("TOUCHPOINTS_API_KEY", make_key(tmp_path, "read"))
    with LiveViews(refresh_delay=0.05) as live, StoreFeed(demo, live, poll_interval=0.01) as feed:
        assert feed.wait_until_caught_up(30)
        with serve_app(create_app(store=demo, settings=settings, views=live)) as url:
            code, out, _ = cli(capsys, "verify", "--views", "--api", url, "--store", f"sqlite:///{demo.path}")

    assert code == 0, out
    assert url in out


@pytest.mark.slow
def test_verify_views_cli__a_server_whose_views_differ_exits_1_naming_them(capsys, demo, serve_app, tmp_path,
                                                                            monkeypatch):
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO": "0"})
    monkeypatch.setenv("TOUCHPOINTS_API_KEY", make_key(tmp_path, "read"))
    live = load_views(demo, background=True, refresh_delay=0.05)
    stray = REGISTRY.validate({"event_id": str(uuid.uuid4()), "type": "ad_clicked", "anonymous_id": "cookie:stray",
                               "occurred_at": "2023-05-01T00:00:00Z", "channel": "tiktok"})
    live.apply_events([LoggedEvent(live.position, EPOCH, stray.stream, stray)])  # never stored
    with live, serve_app(create_app(store=demo, settings=settings, views=live)) as url:
        code, out, _ = cli(capsys, "verify", "--views", "--api", url, "--store", f"sqlite:///{demo.path}",
                           "--format", "json")

    body = json.loads(out)
    assert code == 1
    assert "funnel" in body["differing"]


@pytest.mark.slow
def test_verify_views_cli__waits_for_the_servers_healthz_to_call_the_views_settled(capsys, demo, serve_app, tmp_path,
                                                                                   monkeypatch):
    # given a server whose views report the head while one event below it is still on the way
    # (over Kafka, a journey of another partition), and whose /healthz says so until it lands
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO": "0"})
    monkeypatch.setenv("TOUCHPOINTS_API_KEY", make_key(tmp_path, "read"))
    logged = [decode_recorded(recorded) for recorded in demo.read_all()]
    late = logged[len(logged) // 2]
    live = LiveViews(refresh_delay=0.05)
    live.apply_events([event for event in logged if event is not late], through_position=demo.head_position())
    arrived = threading.Event()

    def views_health() -> dict[str, str]:
        return {"status": "ok" if arrived.is_set() else "catching_up"}

    def deliver_late() -> None:
        time.sleep(1.0)
        live.apply_events([late])
        live.refresh()
        arrived.set()

    app = create_app(store=demo, settings=settings, views=live, health_checks={"views": views_health})
    with live, serve_app(app) as url:
        delivery = threading.Thread(target=deliver_late)
        delivery.start()
        # when the views are verified
        code, out, _ = cli(capsys, "verify", "--views", "--api", url, "--store", f"sqlite:///{demo.path}",
                           "--format", "json")
        delivery.join()

    # then the comparison waited for them to settle, and its first attempt found them equal
    body = json.loads(out)
    assert code == 0, out
    assert (body["attempts"], body["earlier"], body["ready"]) == (1, [], True)
