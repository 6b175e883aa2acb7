"""LiveViews: the population the API serves, its view cache, and its refresher."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import pytest

from application.demo import generate
from application.live_views import DOCUMENTS, LiveViews, UnknownView
from events.logged import LoggedEvent
from events.registry import REGISTRY
from projections import journey as journey_module
from projections.parameters import ViewParameterError
from projections.population import Population
from projections.views import all_views

RECORDED = datetime(2025, 1, 2, tzinfo=timezone.utc)


def logged(bodies: Iterable[dict[str, Any]], first_position: int = 1) -> list[LoggedEvent]:
    events = []
    for offset, body in enumerate(bodies):
        event = REGISTRY.validate(body)
        events.append(LoggedEvent(first_position + offset, RECORDED, event.stream, event))
    return events


def touch(anon: str, channel: str, at: str) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "ad_clicked", "occurred_at": at, "anonymous_id": anon,
            "channel": channel}


def order(customer: str, at: str, revenue: str = "50.00") -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "order_placed", "occurred_at": at, "customer_id": customer,
            "data": {"order_id": f"o-{uuid.uuid4().hex[:8]}", "revenue": revenue, "currency": "EUR"}}


def link(anon: str, customer: str, at: str) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "identity_linked", "occurred_at": at, "anonymous_id": anon,
            "customer_id": customer}


@pytest.fixture(scope="module")
def demo_events() -> list[LoggedEvent]:
    return logged(generate(200, 3))


def test_live_views__applying_events_moves_position_version_and_data_time():
    views = LiveViews(background=False)
    events = logged([touch("ig:@a", "instagram", "2024-01-01T10:00:00Z"),
                     touch("ig:@a", "tiktok", "2024-01-03T10:00:00Z")])

    views.apply_events(events)

    assert views.position == 2
    assert views.version == 1
    assert views.now() == datetime(2024, 1, 3, 10, tzinfo=timezone.utc)


def test_live_views__a_late_event_does_not_move_data_time_back():
    views = LiveViews(background=False)
    views.apply_events(logged([touch("ig:@a", "instagram", "2024-05-01T00:00:00Z")]))

    views.apply_events(logged([touch("ig:@b", "tiktok", "2023-01-01T00:00:00Z")], first_position=2))

    assert views.now() == datetime(2024, 5, 1, tzinfo=timezone.utc)


def test_live_views__unchanged_data_serves_the_cached_document():
    views = LiveViews(background=False)
    views.apply_events(logged([touch("ig:@a", "instagram", "2024-01-01T10:00:00Z")]))

    first = views.view("first_contact")
    second = views.view("first_contact")

    assert second is first
    assert first.document["reached"] == 1


def test_live_views__explicit_default_parameters_share_the_cached_document():
    views = LiveViews(background=False)

    plain = views.view("attribution", model="linear")
    explicit = views.view("attribution", model="linear", group_by="channel", lookback_days=None, half_life_days=7.0)

    assert explicit is plain


def test_live_views__a_change_is_visible_once_the_cached_document_is_older_than_max_staleness():
    views = LiveViews(background=False, max_stale_seconds=0.0)
    views.apply_events(logged([touch("ig:@a", "instagram", "2024-01-01T10:00:00Z")]))
    assert views.document("funnel")["reached"] == 1

    views.apply_events(logged([touch("ig:@b", "tiktok", "2024-01-02T10:00:00Z")], first_position=2))

    assert views.document("funnel")["reached"] == 2


def test_live_views__a_recent_cached_document_is_served_while_fresh_enough():
    views = LiveViews(background=False, max_stale_seconds=60.0)
    views.apply_events(logged([touch("ig:@a", "instagram", "2024-01-01T10:00:00Z")]))
    before = views.view("funnel")

    views.apply_events(logged([touch("ig:@b", "tiktok", "2024-01-02T10:00:00Z")], first_position=2))

    assert views.view("funnel") is before
    assert views.peek("funnel") is before


def test_live_views__refresher_brings_precomputed_views_up_to_date_once_per_burst():
    views = LiveViews(refresh_delay=0.05)
    try:
        bursts = [logged([touch(f"ig:@{i}", "instagram", "2024-01-01T10:00:00Z")], first_position=i + 1)
                  for i in range(40)]
        for batch in bursts:
            views.apply_events(batch)

        deadline = time.monotonic() + 30
        while views.stats()["refreshed_version"] != views.version and time.monotonic() < deadline:
            views.wait_for_change(0.05)
            time.sleep(0.02)

        assert views.stats()["refreshed_version"] == views.version == 40
        assert views.peek("funnel").document["reached"] == 40
        assert views.stats()["refreshes"] < 40
    finally:
        views.close()


def test_live_views__every_precomputed_view_is_cached_after_a_refresh(demo_events):
    views = LiveViews(background=False)
    views.apply_events(demo_events)

    views.refresh()

    # all_views computes every document again, straight from the projections
    replayed = views.all_documents()
    cached = {f"attribution_{model}": views.peek("attribution", model=model)
              for model in ("first_touch", "last_touch", "linear", "time_decay", "position_based", "markov", "shapley")}
    for name in ("conversion_time", "paths", "top_customers", "prospects", "funnel", "data_quality"):
        cached[name] = views.peek(name)
    cached["first_contact_by_channel"] = views.peek("first_contact")
    cached["first_contact_by_campaign"] = views.peek("first_contact", group_by="campaign")
    for name, entry in cached.items():
        assert entry is not None, f"{name} is not cached"
        assert entry.version == views.version, name
        assert entry.document == replayed[name], name
    assert set(cached) == set(replayed)


def test_live_views__a_refresh_while_the_feed_applies_gives_documents_of_one_position(demo_events):
    # given live views and a feed applying events one at a time meanwhile
    views = LiveViews(background=False)
    views.apply_events(demo_events[:100])
    stop = threading.Event()

    def feed() -> None:
        for event in demo_events[100:]:
            if stop.is_set():
                return
            views.apply_events([event])

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        # when the documents are refreshed again and again
        positions = []
        for _ in range(10):
            views.refresh()
            positions.append({views.peek(view, **params).position for view, params in DOCUMENTS.values()})
    finally:
        stop.set()
        feeder.join()

    # then each refresh's documents all reflect one position: a refresh is one cut of the fold
    assert all(len(seen) == 1 for seen in positions), positions
    assert views.stats()["refresh_computing_seconds"] > 0


def test_live_views__a_refresh_takes_the_views_lock_once(demo_events):
    # given live views whose documents are all stale, and a lock that counts its holds
    views = LiveViews(background=False)
    views.apply_events(demo_events)
    holds = []
    lock = views.locked()

    class Counting:
        def __enter__(self):
            lock.acquire()
            holds.append(1)

        def __exit__(self, *exc):
            lock.release()

    views._lock = Counting()

    # when they are refreshed
    views.refresh()

    # then the feed waited for the refresh once, not once a document
    assert len(holds) == 1
    stats = views.stats()
    assert stats["longest_refresh_seconds"] >= stats["refresh_computing_seconds"] > 0


def test_live_views__with_a_refresher_the_feed_maintains_the_aggregates_as_it_applies(demo_events):
    # given live views served by a refresher (that will not refresh during the test) and
    # views without one, each fed the same events
    served = LiveViews(refresh_delay=60.0)
    on_demand = LiveViews(background=False)
    try:
        # when a batch is applied
        served.apply_events(demo_events)
        on_demand.apply_events(demo_events)

        # then the served views' aggregates hold it already: a refresh only renders documents
        with served.locked():
            assert not served.population.summaries.stale
            maintained = served.population.summaries.maintained
            funnel = maintained.find("funnel", {}).document(served.population, {})
        assert on_demand.population.summaries.stale  # without a refresher: at the first query
        assert funnel == on_demand.document("funnel")
        assert served.stats()["refreshes"] == 0
    finally:
        served.close()
        on_demand.close()


def test_live_views__concurrent_readers_of_one_new_key_compute_it_once(demo_events):
    views = LiveViews(background=False)
    views.apply_events(demo_events)
    results = []
    start = threading.Barrier(8)

    def read() -> None:
        start.wait()
        results.append(views.view("attribution", model="markov", lookback_days=30))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({id(result) for result in results}) == 1
    assert views.stats()["computes"] == 1


def test_live_views__an_unknown_view_is_refused():
    with pytest.raises(UnknownView):
        LiveViews(background=False).view("nonsense")


def test_live_views__an_unknown_parameter_is_named():
    with pytest.raises(ViewParameterError) as raised:
        LiveViews(background=False).view("paths", bogus=1)

    assert raised.value.param == "bogus"


def test_live_views__a_bad_parameter_value_raises_the_projections_error_naming_it():
    with pytest.raises(ViewParameterError) as raised:
        LiveViews(background=False).view("paths", top=0)

    assert raised.value.param == "top"


def test_live_views__journeys_from_the_processors_give_the_same_documents_as_events(demo_events):
    from_events = LiveViews(background=False)
    from_events.apply_events(demo_events)
    journeys: dict[str, journey_module.IdentityJourney] = {}
    for event in demo_events:
        journey = journeys.setdefault(event.stream, journey_module.initial_state(event.stream))
        journey_module.evolve(journey, event)
    from_journeys = LiveViews(background=False)

    from_journeys.apply_journeys(journeys.items())

    assert from_journeys.all_documents() == from_events.all_documents()
    assert from_journeys.position == from_events.position


def test_live_views__a_tombstone_forgets_the_identity():
    views = LiveViews(background=False)
    events = logged([touch("ig:@a", "instagram", "2024-01-01T10:00:00Z"),
                     touch("ig:@b", "tiktok", "2024-01-02T10:00:00Z")])
    journeys = {}
    for event in events:
        journeys.setdefault(event.stream, journey_module.initial_state(event.stream)).apply(event)
    views.apply_journeys(journeys.items())

    views.apply_journeys([("anonymous-ig:@a", None)])

    assert views.document("funnel")["reached"] == 1


def test_live_views__timeline_of_a_linked_identity_is_the_customer_timeline():
    views = LiveViews(background=False)
    events = logged([
        touch("ig:@anna", "instagram", "2022-01-01T10:00:00Z"),
        link("ig:@anna", "anna", "2024-01-01T10:00:00Z"),
        order("anna", "2024-01-02T10:00:00Z"),
    ])
    views.apply_events(events)
    asked = []

    def read(streams: list[str]) -> list[LoggedEvent]:
        asked.append(streams)
        return [event for event in events if event.stream in streams]

    document = views.timeline("ig:@anna", read)

    assert asked == [["anonymous-ig:@anna", "customer-anna"]]
    assert document["identity"] == "customer-anna"
    assert [event["type"] for event in document["events"]] == ["ad_clicked", "identity_linked", "order_placed"]
    assert document["first_contact"]["channel"] == "instagram"


def test_live_views__timeline_of_an_unknown_identity_is_none():
    assert LiveViews(background=False).timeline("nobody", lambda streams: []) is None


def test_live_views__journeys_snapshot_restores_the_same_documents(demo_events):
    views = LiveViews(background=False)
    views.apply_events(demo_events)
    position, data_time, journeys = views.journeys_snapshot()
    restored = LiveViews(background=False)

    restored.restore([(j.key, j) for j in map(journey_module.IdentityJourney.from_bytes, journeys)],
                     position=position, data_time=data_time)

    assert restored.position == views.position
    assert restored.now() == views.now()
    assert restored.all_documents() == views.all_documents()


def test_all_documents__names_every_document_of_all_views_once():
    # given an empty population, when every document the audit digests is listed
    documents = all_views(Population(), now=datetime(2025, 1, 1, tzinfo=timezone.utc))

    # then the live views know where each one comes from, and nothing else
    assert set(DOCUMENTS) == set(documents)
