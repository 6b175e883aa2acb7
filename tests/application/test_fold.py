"""The fold shell: decode, evolve, and track data time and log position, the one way the log
becomes a population for the replay, the store feed and the live views."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from application.fold import LogFold, journey_extent
from application.live_views import LiveViews
from application.replay import replay
from application.store_feed import load_views
from events.logged import LoggedEvent
from events.registry import REGISTRY, decode_recorded
from events.sqlite.store import SQLiteEventStore
from projections.journey import IdentityJourney

RECORDED = datetime(2025, 1, 2, tzinfo=timezone.utc)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def logged(position: int, body: dict[str, Any]) -> LoggedEvent:
    event = REGISTRY.validate(body)
    return LoggedEvent(position, RECORDED, event.stream, event)


def touch(position: int, anon: str, occurred: str) -> LoggedEvent:
    return logged(position, {"event_id": str(uuid.uuid4()), "type": "ad_clicked", "occurred_at": occurred,
                             "anonymous_id": anon, "channel": "instagram"})


def link(position: int, anon: str, customer: str, occurred: str) -> LoggedEvent:
    return logged(position, {"event_id": str(uuid.uuid4()), "type": "identity_linked", "occurred_at": occurred,
                             "anonymous_id": anon, "customer_id": customer})


def given(*events: LoggedEvent) -> LogFold:
    folded = LogFold()
    folded.fold(events)
    return folded


def journeys(folded: LogFold) -> dict[str, bytes]:
    return {key: journey.to_bytes() for key, journey in folded.population.journeys.items()}


@pytest.fixture(scope="module")
def demo(demo_store_path: Path) -> Iterator[SQLiteEventStore]:
    with SQLiteEventStore(demo_store_path) as store:
        yield store


def test_fold__tracks_the_position_reached_and_the_newest_and_oldest_occurred_at():
    folded = given(touch(1, "ig:@a", "2024-01-02T00:00:00Z"), touch(2, "ig:@b", "2024-01-05T00:00:00Z"),
                   touch(3, "ig:@c", "2024-01-01T00:00:00Z"))  # a late arrival

    assert folded.position == 3
    assert folded.data_time == at("2024-01-05T00:00:00+00:00")
    assert folded.oldest == at("2024-01-01T00:00:00+00:00")


def test_fold__a_redelivered_event_changes_nothing():
    first, second = touch(1, "ig:@a", "2024-01-02T00:00:00Z"), link(2, "ig:@a", "c-1", "2024-01-03T00:00:00Z")
    folded = given(first, second)
    before = (journeys(folded), folded.position, folded.data_time, folded.oldest)

    folded.fold([first])

    assert (journeys(folded), folded.position, folded.data_time, folded.oldest) == before


def test_fold__through_position_passes_events_read_but_not_folded_and_never_goes_back():
    folded = given(touch(1, "ig:@a", "2024-01-02T00:00:00Z"))

    folded.fold([], through_position=5)
    assert folded.position == 5
    folded.fold([touch(3, "ig:@b", "2024-01-03T00:00:00Z")])  # redelivered from before 5
    assert folded.position == 5
    assert folded.data_time == at("2024-01-03T00:00:00+00:00")


def test_fold__an_empty_fold_leaves_data_time_unknown():
    folded = given()

    assert (folded.position, folded.data_time, folded.oldest) == (None, None, None)


def test_fold__pauses_the_cyclic_collector_while_folding_and_restores_it():
    seen = []

    def events() -> Iterator[LoggedEvent]:
        seen.append(gc.isenabled())
        yield touch(1, "ig:@a", "2024-01-02T00:00:00Z")
        seen.append(gc.isenabled())

    assert gc.isenabled()
    given().fold(events())

    assert seen == [False, False]
    assert gc.isenabled()


def test_fold__replay_the_store_feed_and_the_live_views_agree_through_it(demo):
    through_feed = LogFold()
    through_feed.fold(decode_recorded(recorded) for recorded in demo.read_all())
    live = load_views(demo)
    replayed = replay(demo)

    assert journeys(through_feed) == {key: j.to_bytes() for key, j in replayed.population.journeys.items()}
    assert journeys(through_feed) == {key: j.to_bytes() for key, j in live.population.journeys.items()}
    assert through_feed.position == live.position == replayed.last_position == demo.head_position()
    assert through_feed.data_time == live.now() == replayed.now
    assert through_feed.oldest == replayed.first_occurred_at


def test_journey_extent__is_the_highest_position_and_newest_time_a_journey_reflects():
    folded = given(touch(4, "ig:@a", "2024-01-05T00:00:00Z"), touch(9, "ig:@a", "2024-01-02T00:00:00Z"),
                   link(7, "ig:@a", "c-1", "2024-01-03T00:00:00Z"))

    assert journey_extent(folded.population.journeys["anonymous-ig:@a"]) == (9, at("2024-01-05T00:00:00+00:00"))
    assert journey_extent(IdentityJourney("anonymous-ig:@z")) == (None, None)


def test_journey_extent__applied_journeys_give_the_live_views_the_fold_s_position_and_data_time():
    folded = given(touch(1, "ig:@a", "2024-01-02T00:00:00Z"), touch(2, "ig:@b", "2024-01-05T00:00:00Z"))
    views = LiveViews(background=False)

    views.apply_journeys(folded.population.journeys.items())

    assert (views.position, views.now()) == (folded.position, folded.data_time)
