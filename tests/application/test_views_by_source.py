"""The live views by source equal a replay of the log: the store feed folds appends as they
come (the maintained aggregates updated per batch), the audit replay folds the whole log
and computes the definitions."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from application.demo import generate
from application.ingest import Ingestor
from application.live_views import VIEW_SPECS, LiveViews
from application.replay import replay
from application.store_feed import StoreFeed
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from projections.attribution import MODELS

QUERIES = [
    ("first_contact", {"group_by": "source"}),
    ("first_contact", {"group_by": "source", "start": "2023-06-01", "end": "2024-06-01"}),
    *(("attribution", {"model": model, "group_by": "source"}) for model in MODELS),
    ("attribution", {"model": "time_decay", "group_by": "source", "lookback_days": 30, "start": "2023-06-01"}),
    ("paths", {"group_by": "source"}),
    ("conversion_time", {"group_by": "first_source"}),
]


def touches_without_a_source() -> list[dict]:
    """Prospects and a customer whose touches name no source (the demo's all do)."""
    def touch(who: dict, channel: str, at: str) -> dict:
        return {"event_id": str(uuid.uuid4()), "type": "ad_clicked", "occurred_at": at, "channel": channel, **who}

    return [
        touch({"anonymous_id": "no-source-1"}, "email", "2023-08-01T10:00:00Z"),
        touch({"anonymous_id": "no-source-2"}, "paid_search", "2024-02-01T10:00:00Z"),
        touch({"customer_id": "no-source-3"}, "email", "2023-09-01T10:00:00Z"),
        {"event_id": str(uuid.uuid4()), "type": "order_placed", "occurred_at": "2023-09-02T10:00:00Z",
         "customer_id": "no-source-3", "data": {"order_id": "no-source-o1", "revenue": "12.00", "currency": "EUR"}},
    ]


@pytest.fixture
def store(tmp_path: Path):
    with SQLiteEventStore(tmp_path / "events.db") as opened:
        yield opened


def test_views_by_source__live_equal_a_replay_of_the_log(store):
    bodies = [*generate(120, 17), *touches_without_a_source()]
    events = [REGISTRY.validate(body) for body in bodies]
    ingestor = Ingestor(store)
    live = LiveViews(background=False)

    # given the live views folding the log as it is appended, in several appends and batches
    with StoreFeed(store, live, batch_size=97, poll_interval=0.01) as feed:
        for start in range(0, len(events), 400):
            ingestor.append(events[start : start + 400])
        assert feed.wait_until_caught_up(timeout=60)

    # when the log is replayed
    replayed = replay(store).live_views()

    # then every view by source answers the same document (first contact and attribution from aggregates)
    for name, params in QUERIES:
        assert live.view(name, **params).document == replayed.view(name, **params).document, (name, params)
    maintained = live.population.summaries.maintained
    assert all(maintained.find(name, dict(VIEW_SPECS[name].key(params)[1]))
               for name, params in QUERIES if name in ("first_contact", "attribution"))
    by_source = {row["source"] for row in live.view("first_contact", group_by="source").document["rows"]}
    assert "(none)" in by_source and len(by_source) > 2
