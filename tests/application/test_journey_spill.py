"""Journeys kept in a SQLite file (application.journey_spill): the live views serve the same
documents as with every journey in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from application import journey_spill
from application.demo import generate
from application.journey_spill import SpilledJourneys
from application.live_views import LiveViews
from events.logged import LoggedEvent
from projections import journey as journey_module
from projections.aggregates.base import ContributionAggregate
from projections import population as population_module
from tests.application.test_live_views import logged


@pytest.fixture(scope="module")
def demo_events() -> list[LoggedEvent]:
    return logged(generate(150, 5))


@pytest.fixture
def little_memory(monkeypatch):
    """Few changed journeys held before they are written, few summaries kept: every path runs."""
    monkeypatch.setattr(journey_spill, "HELD", 3)
    monkeypatch.setattr(journey_spill, "WRITE_BATCH", 2)
    monkeypatch.setattr(population_module, "SUMMARIES_KEPT", 5)


def exact_views(**options) -> LiveViews:
    """Live views that never serve a document computed before the last change: the default
    0.2 s of staleness would compare a fresh document with one from the previous batch."""
    return LiveViews(background=False, max_stale_seconds=0.0, **options)


def journeys_of(events: list[LoggedEvent]) -> dict[str, journey_module.IdentityJourney]:
    journeys: dict[str, journey_module.IdentityJourney] = {}
    for event in events:
        journey_module.evolve(journeys.setdefault(event.stream, journey_module.initial_state(event.stream)), event)
    return journeys


def some_documents(views: LiveViews) -> dict:
    """Every default document, and views the definitions answer (they walk every group)."""
    now = views.now()
    return {
        **views.all_documents(),
        "paths_30_days": views.view("paths", lookback_days=30).document,
        "prospects_instagram": views.view("prospects", channel="instagram", now=now).document,
        "conversion_time_by_campaign": views.view("conversion_time", group_by="first_campaign", now=now).document,
    }


def test_spilled_journeys__a_written_journey_reads_back_equal(tmp_path: Path, demo_events):
    journeys = journeys_of(demo_events)
    spilled = SpilledJourneys(tmp_path, held=4, write_batch=3)

    for key, journey in journeys.items():
        spilled[key] = journey
    spilled.flush()

    assert len(spilled) == len(journeys)
    assert set(spilled) == set(journeys)
    assert all(spilled[key] == journey and key in spilled for key, journey in journeys.items())
    assert "anonymous-nobody" not in spilled and spilled.get("anonymous-nobody") is None


def test_spilled_journeys__leave_no_file_behind(tmp_path: Path):
    spilled = SpilledJourneys(tmp_path)

    spilled["customer-a"] = journey_module.initial_state("customer-a")
    spilled.flush()

    assert list(tmp_path.iterdir()) == []


def test_spilled_journeys__a_saved_copy_is_adopted_whole_by_the_next_process(tmp_path: Path, demo_events):
    # given journeys in a file, some still held decoded and unwritten, saved as a copy
    journeys = journeys_of(demo_events)
    spilled = SpilledJourneys(tmp_path / "first", held=4, write_batch=3)
    for key, journey in journeys.items():
        spilled[key] = journey
    spilled.save_copy(tmp_path / "saved.sqlite")
    spilled.close()

    # when another mapping adopts the copy
    adopted = SpilledJourneys(tmp_path / "second", adopt=tmp_path / "saved.sqlite")

    # then it holds every journey, and no file is left under any name
    assert len(adopted) == len(journeys)
    assert all(adopted[key] == journey for key, journey in journeys.items())
    assert list(tmp_path.rglob("*.sqlite*")) == []


def test_live_views__journeys_in_a_file_give_the_documents_of_journeys_in_memory(tmp_path, demo_events, little_memory):
    in_memory, in_file = exact_views(), exact_views(journeys_folder=tmp_path)

    for start in range(0, len(demo_events), 400):  # documents computed between batches: groups change
        batch = demo_events[start:start + 400]
        in_memory.apply_events(batch)
        in_file.apply_events(batch)
        assert some_documents(in_file) == some_documents(in_memory)

    assert len(in_file.population.journeys) == len(in_memory.population.journeys)


def test_live_views__replaced_journeys_in_a_file_give_the_documents_of_journeys_in_memory(
    tmp_path, demo_events, little_memory
):
    # given the journeys of the first half of the log, then of all of it (links and merges move groups)
    halfway, everything = journeys_of(demo_events[: len(demo_events) // 2]), journeys_of(demo_events)
    in_memory, in_file = exact_views(), exact_views(journeys_folder=tmp_path)
    for journeys in (halfway, everything):
        in_memory.apply_journeys(journeys.items())
        in_file.apply_journeys(journeys.items())

        assert some_documents(in_file) == some_documents(in_memory)


def test_live_views__timeline_reads_a_group_from_the_file(tmp_path, demo_events, little_memory):
    in_memory, in_file = exact_views(), exact_views(journeys_folder=tmp_path)
    in_memory.apply_events(demo_events)
    in_file.apply_events(demo_events)
    in_file.all_documents()
    linked = next(event.event.anonymous_id for event in demo_events if event.event.TYPE == "identity_linked")

    def read(streams: list[str]) -> list[LoggedEvent]:
        return [event for event in demo_events if event.stream in streams]

    assert in_file.timeline(linked, read) == in_memory.timeline(linked, read)


def test_spilled_journeys__a_replaced_journey_counts_once(tmp_path: Path, demo_events):
    journeys = journeys_of(demo_events)
    spilled = SpilledJourneys(tmp_path, held=0, write_batch=1)
    for key, journey in journeys.items():
        spilled[key] = journey
    spilled.flush()
    key = next(iter(journeys))

    spilled[key] = journey_module.initial_state(key)  # replaced, not written yet

    assert len(spilled) == len(journeys)
    assert sorted(spilled) == sorted(journeys)
    assert spilled[key] == journey_module.initial_state(key)


def test_live_views__a_journeys_snapshot_of_journeys_in_a_file_restores_the_same_documents(
    tmp_path, demo_events, little_memory
):
    views = LiveViews(background=False, journeys_folder=tmp_path)
    views.apply_events(demo_events)
    position, data_time, journeys = views.journeys_snapshot()
    restored = LiveViews(background=False)

    restored.restore([(j.key, j) for j in map(journey_module.IdentityJourney.from_bytes, journeys)],
                     position=position, data_time=data_time)

    assert len(journeys) == len(views.population.journeys)
    assert restored.all_documents() == views.all_documents()


def test_spilled_contributions__rows_let_go_read_back_as_they_were(tmp_path: Path):
    # given kept contribution rows in a journeys file that holds one row decoded
    from datetime import datetime, timezone

    from projections.aggregates.conversion_time import _IN_COLUMN
    from projections.aggregates.paths import CollapsedPath

    kept = SpilledJourneys(tmp_path).contributions()
    kept.held, kept.write_batch = 1, 1
    rows = {
        0: (CollapsedPath(("ads", "seo"), None), _IN_COLUMN, 3),
        1: ((-25000, "customer-c1", 2, datetime(2024, 3, 1, tzinfo=timezone.utc), True), None, None),
        2: (None, None, 7),
        3: ((("ads", "seo"), 12.5, b"\x00"), None, 1),  # builtins alone, as MaintainedViews puts them (plain)
    }

    # when they are put, one is emptied, and all are let go to the file
    for slot, row in rows.items():
        kept.put(slot, row)
    kept.put(2, None)
    for slot in (5, 6, 7, 8):
        kept.get(slot)

    # then each reads back equal, the marker as itself, the emptied one as nothing
    assert kept.get(0) == rows[0] and kept.get(0)[1] is _IN_COLUMN
    assert kept.get(1) == rows[1] and kept.get(3) == rows[3]
    assert kept.get(2) is None and kept.get(9) is None
    # and a row of builtins alone was written by marshal, the others by pickle
    kept.flush()
    encodings = dict(kept._db.execute("SELECT slot, substr(row, 1, 1) FROM contributions"))
    assert encodings == {0: b"p", 1: b"p", 3: b"m"}


def test_live_views__kept_contributions_live_in_the_journeys_file(tmp_path, demo_events, little_memory):
    # given live views keeping their journeys in a file, and others in memory
    views, in_memory = exact_views(journeys_folder=tmp_path), exact_views()

    # when the log is folded into both and their documents rendered
    for live in (views, in_memory):
        live.apply_events(demo_events)
        live.all_documents()

    # then the aggregates' kept contributions are rows of that file, the ones held in memory
    maintained, held = views.population.summaries.maintained, in_memory.population.summaries.maintained
    assert isinstance(maintained.kept, journey_spill.SpilledContributions)
    maintained.kept.flush()
    assert maintained.kept._db.execute("SELECT count(*) FROM contributions").fetchone()[0] > journey_spill.HELD
    for mine, theirs in zip(maintained._aggregates, held._aggregates, strict=True):
        if isinstance(mine, ContributionAggregate):
            assert maintained.contributions(mine) == held.contributions(theirs)
