"""StoreFeed and load_views: the live views fed from a real SQLite store, without Kafka."""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from application.ingest import Ingestor
from application.live_views import LiveViews
from application.store_feed import StoreFeed, load_views, read_member_events
from events.sqlite.store import SQLiteEventStore


@pytest.fixture
def demo_copy(demo_store_path: Path, tmp_path: Path) -> SQLiteEventStore:
    shutil.copy(demo_store_path, tmp_path / "copy.db")
    store = SQLiteEventStore(tmp_path / "copy.db")
    yield store
    store.close()


def append(store: SQLiteEventStore, *bodies: dict) -> None:
    events, invalid = Ingestor(store).validate_batch(list(bodies))
    assert not invalid
    Ingestor(store).append(events)


def touch(anon: str, at: str = "2024-12-31T10:00:00Z", channel: str = "tiktok") -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "ad_clicked", "occurred_at": at, "anonymous_id": anon,
            "channel": channel}


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_store_feed__catches_up_with_the_whole_log(demo_copy):
    views = LiveViews(background=False)

    with StoreFeed(demo_copy, views) as feed:
        caught_up = feed.wait_until_caught_up(30)

    assert caught_up
    assert views.position == demo_copy.head_position()
    assert views.stats()["events_applied"] == demo_copy.count()


def test_store_feed__a_new_append_reaches_the_views(demo_copy):
    views = LiveViews(background=False, max_stale_seconds=0.0)
    with StoreFeed(demo_copy, views) as feed:
        feed.wait_until_caught_up(30)
        reached = views.document("funnel")["reached"]

        append(demo_copy, touch("tiktok:@brand-new"))
        arrived = wait_for(lambda: views.position == demo_copy.head_position(), timeout=10)

    assert arrived, "the appended event never reached the views"
    assert views.document("funnel")["reached"] == reached + 1


def test_store_feed__a_burst_of_appends_is_folded_in_batches(demo_copy):
    views = LiveViews(background=False)
    with StoreFeed(demo_copy, views) as feed:
        feed.wait_until_caught_up(30)
        batches_before = views.stats()["batches"]

        for index in range(10):
            append(demo_copy, *(touch(f"cookie:burst-{index}-{n}") for n in range(50)))
        assert wait_for(lambda: views.position == demo_copy.head_position(), timeout=20)

    assert views.stats()["batches"] - batches_before < 100  # 500 events: far fewer folds than events
    assert feed.stats()["applied"] == demo_copy.count()


def test_store_feed__stop_ends_both_threads(demo_copy):
    feed = StoreFeed(demo_copy, LiveViews(background=False)).start()
    feed.wait_until_caught_up(30)

    feed.stop()

    assert not feed.running
    assert feed.stats()["running"] is False


def test_store_feed__stats_report_no_backlog_once_caught_up(demo_copy):
    with StoreFeed(demo_copy, LiveViews(background=False)) as feed:
        feed.wait_until_caught_up(30)
        stats = feed.stats()

    assert stats["backlog_events"] == 0
    assert stats["errors"] == 0
    assert stats["position"] == demo_copy.head_position()


def test_load_views__folds_the_log_like_the_live_feed(demo_copy):
    live = LiveViews(background=False)
    with StoreFeed(demo_copy, live) as feed:
        feed.wait_until_caught_up(30)

    loaded = load_views(demo_copy)

    assert loaded.position == live.position
    assert loaded.all_documents() == live.all_documents()


def test_load_views__the_snapshot_is_reused_and_only_new_events_are_folded(demo_copy, tmp_path):
    folder = tmp_path / "snapshots"
    first = load_views(demo_copy, snapshot_dir=folder)
    append(demo_copy, touch("tiktok:@after-snapshot"))
    read_pages = []

    second = load_views(demo_copy, snapshot_dir=folder, progress=read_pages.append)

    assert (folder / "views.snapshot").exists()
    assert read_pages == [1]
    assert second.position == demo_copy.head_position()
    assert second.document("funnel")["reached"] == first.document("funnel")["reached"] + 1
    assert second.all_documents() == load_views(demo_copy).all_documents()


def test_load_views__a_snapshot_of_another_log_is_ignored(demo_copy, tmp_path):
    folder = tmp_path / "snapshots"
    load_views(demo_copy, snapshot_dir=folder)
    other = SQLiteEventStore(tmp_path / "other.db")
    try:
        append(other, *(touch(f"cookie:other-{n}") for n in range(5)))

        views = load_views(other, snapshot_dir=folder)

        assert views.document("funnel")["reached"] == 5
    finally:
        other.close()


def test_read_member_events__as_of_and_known_at_keep_only_earlier_events(store):
    append(store, touch("cookie:t", at="2024-01-01T00:00:00Z"), touch("cookie:t", at="2024-03-01T00:00:00Z"))

    by_occurrence = read_member_events(store, ["anonymous-cookie:t"],
                                       as_of=datetime(2024, 2, 1, tzinfo=timezone.utc))
    by_recording = read_member_events(store, ["anonymous-cookie:t"],
                                      known_at=datetime(2000, 1, 1, tzinfo=timezone.utc))

    assert [e.event.occurred_at.month for e in by_occurrence] == [1]
    assert by_recording == []
