"""The live views' whole state across a clean restart (application.view_state,
LiveViews.save_state / load_state): taken up, the views continue exactly where they
stopped; anything that cannot be trusted is ignored and the views rebuild."""

from __future__ import annotations

import gc
import json
import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from application import view_state
from application.demo import generate
from application.live_views import DOCUMENTS, LiveViews, ViewsNotReady
from events.logged import LoggedEvent
from projections import journey as journey_module
from tests.application.test_journey_spill import journeys_of, little_memory, some_documents  # noqa: F401
from tests.application.test_live_views import logged, touch

FEED = {"kind": "store"}
STATE = view_state.STATE_FILE


@pytest.fixture(scope="module")
def demo_events() -> list[LoggedEvent]:
    return logged(generate(150, 7))


@pytest.fixture(params=["memory", "file", "file, contributions in memory"])
def where(request) -> str:
    """Where the views keep their journeys: in memory, or in a file (what large populations run),
    with the maintained views' kept contributions beside them or not."""
    return request.param


def views_in(folder: Path, where: str) -> LiveViews:
    return LiveViews(background=False, max_stale_seconds=0.0, state_folder=folder,
                     journeys_folder=folder / "journeys" if where.startswith("file") else None,
                     contributions_on_disk=where == "file", documents_path=folder / "documents.json")


def the_log_holds(events: list[LoggedEvent]):
    ids = {event.position: str(event.event.event_id) for event in events}
    return lambda position, event_id: ids.get(position) == event_id


def stopped_after(folder: Path, where: str, events: list[LoggedEvent], feed=FEED) -> LiveViews:
    """Given: a process whose views folded ``events``, queried them and stopped cleanly."""
    views = views_in(folder, where)
    views.apply_events(events)
    some_documents(views)
    views.refresh()  # the default documents, saved on close
    assert views.save_state(feed=feed, event_id=str(events[-1].event.event_id))
    views.close()
    return views


def everything_folded(events: list[LoggedEvent], where: str, folder: Path) -> dict:
    views = views_in(folder, where)
    views.apply_events(events)
    return some_documents(views)


def test_taken_up__the_views_continue_as_if_they_never_stopped(tmp_path, demo_events, where, little_memory):
    # given views that folded the first half of the log and stopped cleanly
    half = len(demo_events) // 2
    stopped_after(tmp_path / "state", where, demo_events[:half])

    # when the next process takes their state up and folds the rest
    views = views_in(tmp_path / "state", where)
    resume = views.load_state(holds=the_log_holds(demo_events), feed="store")
    at_once = views.position
    views.apply_events(demo_events[half:])

    # then it started where they stopped, and serves what folding the whole log gives, byte for byte
    assert resume == FEED
    assert at_once == demo_events[half - 1].position
    assert views.restored_status() is None
    assert json.dumps(some_documents(views), sort_keys=True, default=str) == json.dumps(
        everything_folded(demo_events, where, tmp_path / "all"), sort_keys=True, default=str)


def test_taken_up__timelines_and_other_parameters_answer_at_once(tmp_path, demo_events, where):
    stopped_after(tmp_path, where, demo_events)

    views = views_in(tmp_path, where)
    views.load_state(holds=the_log_holds(demo_events), feed="store")

    customer = next(event.stream for event in demo_events if event.stream.startswith("customer-"))
    timeline = views.timeline(customer, lambda streams: [e for e in demo_events if e.stream in streams])
    assert timeline is not None and timeline["events"]
    assert views.view("attribution", model="linear", lookback_days=30).document["rows"]


def test_taken_up_after_the_api_listens__saved_documents_are_served_until_the_state_is_in(tmp_path, demo_events):
    # given a clean stop: default documents and the whole state saved
    stopped_after(tmp_path, "file", demo_events)
    views = views_in(tmp_path, "file")
    saved = views.find_state(holds=the_log_holds(demo_events), feed="store")
    views.restore_documents(head=demo_events[-1].position)
    meanwhile = views.view("funnel").position
    with pytest.raises(ViewsNotReady):
        views.view("attribution", model="linear", lookback_days=30)

    # when the state is taken up in the background, then the feed started
    resumed, started = [], threading.Event()
    feed = SimpleNamespace(resume_from=resumed.append, start=started.set)
    views.take_up_then_feed(saved, feed).join(30)

    # then the documents were served meanwhile, and now the live views answer every query
    assert meanwhile == demo_events[-1].position
    assert started.is_set() and resumed == [FEED]
    assert views.restored_status() is None
    assert views.view("attribution", model="linear", lookback_days=30).document["rows"]


def test_taken_up__the_loader_and_its_memo_are_let_go_with_the_load(tmp_path, demo_events, where):
    # given a clean stop, and a process whose collector is paused, as the platform takes a state up
    stopped_after(tmp_path, where, demo_events)
    views = views_in(tmp_path, where)
    gc.disable()
    try:
        # when it takes the state up
        views.load_state(holds=the_log_holds(demo_events), feed="store")

        # then the unpickler (whose memo names every object it made) is gone already, not left in a
        # cycle for a collection the frozen state would never get
        assert not [obj for obj in gc.get_objects() if isinstance(obj, view_state._Unpickler)]
    finally:
        gc.enable()


def test_taken_up__a_state_is_used_once(tmp_path, demo_events, where):
    stopped_after(tmp_path, where, demo_events)
    views_in(tmp_path, where).load_state(holds=the_log_holds(demo_events), feed="store")

    again = views_in(tmp_path, where)

    assert not (tmp_path / STATE).exists() and not (tmp_path / view_state.JOURNEYS_FILE).exists()
    assert again.load_state(holds=the_log_holds(demo_events), feed="store") is None
    assert again.position is None


def test_not_taken_up__a_log_without_the_event_at_the_saved_position(tmp_path, demo_events, caplog):
    stopped_after(tmp_path, "memory", demo_events)
    other_log = logged(generate(150, 8))

    views = views_in(tmp_path, "memory")
    with caplog.at_level(logging.WARNING):
        resume = views.load_state(holds=the_log_holds(other_log), feed="store")

    assert resume is None and views.position is None
    assert "which this log does not hold as it was" in caplog.text
    assert not (tmp_path / STATE).exists()


def test_not_taken_up__a_state_saved_by_other_code(tmp_path, demo_events, monkeypatch, caplog):
    stopped_after(tmp_path, "memory", demo_events)
    monkeypatch.setattr(view_state, "code_digest", lambda: "another version of the projections")

    views = views_in(tmp_path, "memory")
    with caplog.at_level(logging.INFO):
        resume = views.load_state(holds=the_log_holds(demo_events), feed="store")

    assert resume is None and views.position is None
    assert "saved by other code" in caplog.text


def test_not_taken_up__a_state_a_feed_of_another_kind_saved(tmp_path, demo_events, caplog):
    # a Kafka feed's position is not a watermark: a store feed resuming after it could skip events
    stopped_after(tmp_path, "memory", demo_events, feed={"kind": "kafka", "topic_id": "x", "positions": {}})

    views = views_in(tmp_path, "memory")
    with caplog.at_level(logging.INFO):
        resume = views.load_state(holds=the_log_holds(demo_events), feed="store")

    assert resume is None and views.position is None
    assert "saved by a kafka feed, not a store one" in caplog.text


def test_not_taken_up__journeys_kept_elsewhere_than_now(tmp_path, demo_events):
    stopped_after(tmp_path, "memory", demo_events)

    views = views_in(tmp_path, "file")

    assert views.load_state(holds=the_log_holds(demo_events), feed="store") is None
    assert views.position is None


def test_not_taken_up__contributions_kept_elsewhere_than_now(tmp_path, demo_events, caplog):
    stopped_after(tmp_path, "file", demo_events)

    views = views_in(tmp_path, "file, contributions in memory")
    with caplog.at_level(logging.WARNING):
        resume = views.load_state(holds=the_log_holds(demo_events), feed="store")

    assert resume is None and views.position is None
    assert "kept its maintained views' contributions in a file, these do not" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "not a state", "journeys file gone"])
def test_not_taken_up__a_damaged_state_is_a_rebuild_not_a_failed_start(tmp_path, demo_events, damage, caplog):
    stopped_after(tmp_path, "file", demo_events)
    state = tmp_path / STATE
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif damage == "not a state":
        state.write_bytes(b"{}")
    else:
        (tmp_path / view_state.JOURNEYS_FILE).unlink()

    views = views_in(tmp_path, "file")
    with caplog.at_level(logging.INFO):
        resume = views.load_state(holds=the_log_holds(demo_events), feed="store")

    assert resume is None and views.position is None
    assert "the views rebuild" in caplog.text
    views.apply_events(demo_events)  # and they do
    assert views.position == demo_events[-1].position


def test_save__nothing_while_restored_documents_are_served(tmp_path, demo_events):
    # a process still loading after a restart holds an incomplete population: no state of it
    stopped_after(tmp_path, "memory", demo_events)
    loading = LiveViews(background=False, state_folder=tmp_path, documents_path=tmp_path / "documents.json")
    loading.apply_events(demo_events)
    loading.refresh()
    loading.close()  # saves its documents
    restarted = LiveViews(background=False, state_folder=tmp_path, documents_path=tmp_path / "documents.json")
    restarted.restore_documents(head=demo_events[-1].position)
    restarted.apply_events(demo_events[:10])

    assert not restarted.save_state(feed=FEED, event_id=str(demo_events[9].event.event_id))
    assert not (tmp_path / STATE).exists()


def test_save__an_interrupted_save_leaves_no_state(tmp_path, demo_events, monkeypatch):
    stopped_after(tmp_path, "memory", demo_events)  # an older state is there

    def killed(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(view_state._Pickler, "dump", killed)
    views = views_in(tmp_path, "memory")
    views.apply_events(demo_events)

    assert not views.save_state(feed=FEED, event_id=str(demo_events[-1].event.event_id))
    assert view_state.read_header(tmp_path) is None
    assert list(tmp_path.glob("state*")) == []


def test_newer_journeys_only__journeys_the_views_hold_or_older_ones_change_nothing(demo_events):
    # given views holding every identity's whole journey
    journeys = journeys_of(demo_events)
    views = LiveViews(background=False, max_stale_seconds=0.0)
    views.apply_journeys(list(journeys.items()))
    before = views.all_documents()

    # when a feed reads again what processors republish while folding the log from the start
    views.newer_journeys_only(True)
    partial = journeys_of(demo_events[: len(demo_events) // 3])
    applied = views.apply_journeys(list(partial.items()) + list(journeys.items()))

    # then nothing was taken back, nor applied again
    assert applied == 0
    assert views.all_documents() == before

    # and a journey that reflects a later event is applied
    key = next(key for key in journeys if key.startswith("anonymous-"))
    later = logged([touch(key.removeprefix("anonymous-"), "email", "2024-01-01T00:00:00Z")],
                   first_position=demo_events[-1].position + 1)
    grown = journey_module.IdentityJourney.from_bytes(journeys[key].to_bytes())
    journey_module.evolve(grown, later[0])
    assert views.apply_journeys([(key, grown)]) == 1
    assert views.position == later[0].position


def test_newer_journeys_only__a_tombstone_still_forgets_the_identity(demo_events):
    journeys = journeys_of(demo_events)
    views = LiveViews(background=False, max_stale_seconds=0.0)
    views.apply_journeys(list(journeys.items()))
    views.newer_journeys_only(True)
    key = next(iter(journeys))

    assert views.apply_journeys([(key, None)]) == 1
    with views.locked():
        assert not views.population.journeys[key].seen
