"""Live views (maintained) and a replay (the definitions) agree byte for byte while people
withdraw analytics consent and grant it again."""

from __future__ import annotations

from application.ingest import Ingestor
from application.live_views import LiveViews
from application.replay import replay
from application.store_feed import StoreFeed
from application.verify_views import compare_with_live_views
from application.demo import generate
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from projections.views import prospects_view
from tests.consumers.api.test_view_routes_consent import analytics, event


def withdrawals(identities: list[str], granted: bool, at: str) -> list[dict]:
    """An analytics consent change for each identity stream (``customer-…``, ``anonymous-…``)."""
    def whose(identity: str) -> dict:
        kind, _, value = identity.partition("-")
        return {"customer_id": value} if kind == "customer" else {"anonymous_id": value}

    return [event("consent_changed", at, **whose(identity), data={"purpose": "analytics", "granted": granted})
            for identity in identities]


def test_live_views__equal_a_replay_after_withdrawals_and_new_grants(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        ingest = Ingestor(store)
        ingest.append([REGISTRY.validate(body) for body in generate(200, 11)])
        listed = replay(store).live_views().view("prospects", limit=5).document["rows"]
        people = [row["identity"] for row in listed]
        with LiveViews(background=False) as live, StoreFeed(store, live, poll_interval=0.01) as feed:
            comparisons = []
            for step in (withdrawals(people, False, "2024-12-30T00:00:00Z"),
                         withdrawals(people[:2], True, "2024-12-31T00:00:00Z"),
                         [analytics(False, "2024-12-31T00:00:00Z")]):
                ingest.append([REGISTRY.validate(body) for body in step])
                assert feed.wait_until_caught_up(30)
                comparisons.append(compare_with_live_views(store, live))
            document = live.view("prospects", limit=5).document

    assert [comparison.same for comparison in comparisons] == [True, True, True]
    assert {row["identity"] for row in document["rows"]}.isdisjoint(people[2:])
    assert set(people[:2]) <= {row["identity"] for row in document["rows"]}


def test_replay__as_of_honours_the_moment_of_the_withdrawal(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        Ingestor(store).append([REGISTRY.validate(body) for body in [
            event("page_viewed", "2024-01-01T10:00:00Z", anonymous_id="cookie:1", channel="seo"),
            *withdrawals(["anonymous-cookie:1"], False, "2024-02-01T10:00:00Z"),
        ]])
        before = replay(store, as_of="2024-02-01T09:59:59Z")
        at = replay(store, as_of="2024-02-01T10:00:00Z")

    assert [row["identity"] for row in prospects_view(before.population, now=before.now)["rows"]] == [
        "anonymous-cookie:1"]
    assert prospects_view(at.population, now=at.now)["rows"] == []
