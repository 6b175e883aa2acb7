"""Default view documents saved across restarts: served at once, replaced once the live
views caught up with them (application.view_documents, LiveViews.restore_documents)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from application.demo import generate
from application.live_views import DOCUMENTS, VIEW_SPECS, LiveViews, ViewsNotReady
from application.view_documents import read_documents, write_documents
from events.logged import LoggedEvent
from tests.application.test_live_views import logged

FUNNEL = DOCUMENTS["funnel"][0]


@pytest.fixture(scope="module")
def demo_events() -> list[LoggedEvent]:
    return logged(generate(120, 5))


def saved_by_a_previous_process(path: Path, events: list[LoggedEvent]) -> dict[str, bytes]:
    """Given: a process that folded ``events``, refreshed and closed (saving its documents)."""
    before = LiveViews(background=False, documents_path=path)
    before.apply_events(events)
    before.refresh()
    served = {name: before.view(view, **params).json_bytes() for name, (view, params) in DOCUMENTS.items()}
    before.close()
    return served


def restarted(path: Path, events: list[LoggedEvent], **ready: object) -> LiveViews:
    views = LiveViews(background=False, documents_path=path)
    views.restore_documents(head=events[-1].position, **ready)
    return views


def test_restart__serves_the_saved_documents_before_any_event_is_folded(tmp_path, demo_events):
    path = tmp_path / "documents.json"
    served = saved_by_a_previous_process(path, demo_events)

    views = restarted(path, demo_events)

    assert views.position is None
    for name, (view, params) in DOCUMENTS.items():
        entry = views.view(view, **params)
        assert entry.json_bytes() == served[name]
        assert entry.position == demo_events[-1].position
    assert views.documents_position == demo_events[-1].position
    assert views.restored_status()["position"] == demo_events[-1].position


def test_restart__the_live_documents_take_over_once_they_reflect_the_restored_position(tmp_path, demo_events):
    path = tmp_path / "documents.json"
    served = saved_by_a_previous_process(path, demo_events)
    views = restarted(path, demo_events)

    views.apply_events(demo_events)
    views.refresh()

    assert views.restored_status() is None
    entry = views.view(FUNNEL)
    assert entry.version == views.version
    assert entry.json_bytes() == served["funnel"]


def test_restart__a_half_loaded_population_does_not_replace_the_restored_documents(tmp_path, demo_events):
    path = tmp_path / "documents.json"
    served = saved_by_a_previous_process(path, demo_events)
    views = restarted(path, demo_events)

    views.apply_events(demo_events[: len(demo_events) // 2])
    views.refresh()

    assert views.restored_status() is not None
    assert views.view(FUNNEL).json_bytes() == served["funnel"]


def test_restart__the_live_documents_wait_for_the_feeds_signal(tmp_path, demo_events):
    path = tmp_path / "documents.json"
    saved_by_a_previous_process(path, demo_events)
    signal = {"ready": False}
    views = restarted(path, demo_events, ready=lambda: signal["ready"])
    views.apply_events(demo_events)
    views.refresh()
    assert views.restored_status() is not None

    signal["ready"] = True
    views.refresh()

    assert views.restored_status() is None


def test_restart__other_parameters_and_timelines_are_not_ready_until_the_live_views_took_over(tmp_path, demo_events):
    path = tmp_path / "documents.json"
    saved_by_a_previous_process(path, demo_events)
    views = restarted(path, demo_events)

    with pytest.raises(ViewsNotReady, match="retry shortly"):
        views.view("attribution", model="linear", lookback_days=3.0)
    with pytest.raises(ViewsNotReady):
        views.timeline("customer-1", lambda streams: [])


def test_restart__nothing_is_saved_over_the_file_while_restored_documents_are_served(tmp_path, demo_events):
    path = tmp_path / "documents.json"
    saved_by_a_previous_process(path, demo_events)
    before = path.read_bytes()
    views = restarted(path, demo_events)

    views.apply_events(demo_events[:10])
    views.refresh()
    views.close()

    assert path.read_bytes() == before


def test_restart__documents_of_another_version_are_served_and_reported_as_such(tmp_path, demo_events):
    path = tmp_path / "documents.json"
    saved_by_a_previous_process(path, demo_events)
    old = read_documents(path)
    write_documents(path, version="0.0.0", data_time=old.data_time, saved_at=old.saved_at,
                    documents=[(item.key, item.position, item.encoded) for item in old.documents])

    views = restarted(path, demo_events)

    assert views.restored_status()["version"] == "0.0.0"
    assert views.restored_status()["views_version"] == LiveViews.snapshot_version()
    assert views.view(FUNNEL).position == demo_events[-1].position


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_restart__a_damaged_file_is_ignored_with_a_log_line(tmp_path, demo_events, caplog, damage):
    path = tmp_path / "documents.json"
    saved_by_a_previous_process(path, demo_events)
    whole = path.read_bytes()
    path.write_bytes({"truncated": whole[: len(whole) // 2], "garbage": b"\x00\xffnot json", "empty": b""}[damage])

    with caplog.at_level(logging.WARNING, logger="application.view_documents"):
        views = restarted(path, demo_events)

    assert views.restored_status() is None
    assert "ignored" in caplog.text
    assert views.view(FUNNEL).document["reached"] == 0


def test_restart__documents_beyond_the_stores_head_are_ignored(tmp_path, demo_events, caplog):
    path = tmp_path / "documents.json"
    saved_by_a_previous_process(path, demo_events)
    views = LiveViews(background=False, documents_path=path)

    with caplog.at_level(logging.WARNING, logger="application.live_views"):
        served = views.restore_documents(head=demo_events[-1].position - 1)

    assert served == 0
    assert views.restored_status() is None
    assert "head" in caplog.text


def test_save__is_atomic_and_holds_every_precomputed_document(tmp_path, demo_events):
    path = tmp_path / "views" / "documents.json"

    saved_by_a_previous_process(path, demo_events)

    saved = read_documents(path)
    assert not path.with_name("documents.json.tmp").exists()
    assert saved.version == LiveViews.snapshot_version()
    assert saved.position == demo_events[-1].position
    assert len(saved.documents) == sum(len(spec.precomputed) for spec in VIEW_SPECS.values())
