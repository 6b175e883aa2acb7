"""The demo generator: deterministic, valid, realistic; `touchpoints demo`; loading an empty store."""

import itertools
from collections import Counter
from datetime import datetime

import orjson
import pytest

from application.bulk_ingest import bulk_load
from consumers.cli.main import main
from application.demo import DEFAULT_END, DEFAULT_START, generate, load_demo_if_empty
from application.ingest import Ingestor
from events.models import CORE_EVENT_TYPES
from events.registry import REGISTRY, encode_wire


@pytest.fixture(scope="module")
def demo():
    return list(generate(3000, seed=11))


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def orders_by_customer(events):
    counts = Counter(e["customer_id"] for e in events if e["type"] == "order_placed")
    return counts


def test_same_seed__same_events():
    assert list(generate(200, seed=5)) == list(generate(200, seed=5))


def test_other_seed__other_events():
    first = [e["event_id"] for e in generate(50, seed=5)]
    second = [e["event_id"] for e in generate(50, seed=6)]

    assert set(first).isdisjoint(second)


def test_cli_output__same_seed_gives_the_same_bytes(tmp_path):
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"

    assert main(["demo", "--customers", "300", "--seed", "9", "--out", str(first)]) == 0
    assert main(["demo", "--customers", "300", "--seed", "9", "--out", str(second)]) == 0

    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes().count(b"\n") == sum(1 for _ in generate(300, seed=9))


def test_cli_output__start_year_moves_every_timestamp(tmp_path, capsys):
    assert main(["demo", "--customers", "50", "--start-year", "2019", "--end-year", "2020"]) == 0

    times = [parse_time(orjson.loads(line)["occurred_at"]) for line in capsys.readouterr().out.splitlines()]
    assert times and all(t.year == 2019 for t in times)


def test_cli__end_year_not_after_start_year_is_a_usage_error(capsys):
    assert main(["demo", "--start-year", "2024", "--end-year", "2024"]) == 2


def test_every_event__is_valid_wire_format(demo):
    for event in demo:
        validated = REGISTRY.validate(event)

        # nothing dropped or reshaped: the canonical wire form is the event itself
        # (an event type without payload may leave out its empty `data`)
        assert orjson.loads(encode_wire(validated)) == {"data": {}, **event}, event["event_id"]


def test_output__ingests_with_zero_rejects(store):
    data = b"".join(orjson.dumps(e) + b"\n" for e in generate(500, seed=2))

    report = bulk_load([data], Ingestor(store), decoder="thread")

    assert report.rejected == 0 and report.duplicates == 0
    assert report.accepted == data.count(b"\n")


def test_event_ids__are_unique(demo):
    ids = [e["event_id"] for e in demo]

    assert len(ids) == len(set(ids))


def test_timestamps__lie_within_the_fixed_window(demo):
    times = [parse_time(e["occurred_at"]) for e in demo]

    assert DEFAULT_START <= min(times) and max(times) < DEFAULT_END
    assert max(times) - min(times) > (DEFAULT_END - DEFAULT_START) * 0.9  # multi-year


def test_every_core_type__appears(demo):
    assert {e["type"] for e in demo} == {model.TYPE for model in CORE_EVENT_TYPES}


def test_channel_mix__covers_paid_social_owned_offline_and_organic(demo):
    channels = Counter(e.get("channel") for e in demo)

    for channel in ("instagram", "facebook", "tiktok", "google_ads", "email", "organic_search", "direct",
                    "store", "support", "referral"):
        assert channels[channel] > 0, channel
    assert all(e["campaign"] for e in demo if e["type"] == "ad_clicked")


def test_population__has_prospects_one_time_and_repeat_buyers(demo):
    orders = orders_by_customer(demo)
    known = {e["customer_id"] for e in demo if "customer_id" in e}
    anonymous_only = {e["anonymous_id"] for e in demo if "customer_id" not in e} - {
        e["anonymous_id"] for e in demo if e["type"] == "identity_linked"
    }

    assert len(known - set(orders)) > 100  # newsletter subscribers who never bought
    assert len(anonymous_only) > 300  # followers and visitors never identified
    assert sum(1 for n in orders.values() if n == 1) > 300
    assert sum(1 for n in orders.values() if n >= 3) > 100


def test_social_follows__come_long_before_first_orders(demo):
    linked = {e["anonymous_id"]: e["customer_id"] for e in demo if e["type"] == "identity_linked"}
    followed = {linked[e["anonymous_id"]]: parse_time(e["occurred_at"])
                for e in demo if e["type"] == "social_followed" and e["anonymous_id"] in linked}
    first_order = {}
    for e in demo:
        if e["type"] == "order_placed":
            first_order.setdefault(e["customer_id"], parse_time(e["occurred_at"]))

    gaps = [(first_order[c] - t).days for c, t in followed.items() if c in first_order]
    assert len(gaps) > 100
    assert all(gap > 0 for gap in gaps)
    assert sorted(gaps)[len(gaps) // 2] > 60


def test_anonymous_touches__are_linked_later_some_links_arriving_late(demo):
    links = [e for e in demo if e["type"] == "identity_linked"]
    touched = {e["anonymous_id"] for e in demo if "anonymous_id" in e and e["type"] != "identity_linked"}
    late = 0
    for previous, event in itertools.pairwise(demo):  # in arrival order
        if event["type"] == "identity_linked":
            delay = parse_time(previous["occurred_at"]) - parse_time(event["occurred_at"])
            late += delay.days > 14

    assert sum(1 for link in links if link["anonymous_id"] in touched) > 500
    assert late > 50


def test_merges__fold_a_duplicate_record_that_has_its_own_history(demo):
    merges = [e for e in demo if e["type"] == "customers_merged"]
    duplicate_ids = {m["data"]["duplicate_customer_id"] for m in merges}
    with_history = {e["customer_id"] for e in demo if e["type"] == "order_placed"} & duplicate_ids

    assert 0 < len(merges) < 0.05 * 3000
    assert with_history == duplicate_ids


def test_refunds_and_consent__include_support_contacts_and_withdrawals(demo):
    types = Counter(e["type"] for e in demo)
    withdrawals = [e for e in demo if e["type"] == "consent_changed" and not e["data"]["granted"]]

    assert types["order_refunded"] > 0 and types["support_called"] > 0 and types["support_ticket_opened"] > 0
    assert types["order_refunded"] < types["order_placed"] * 0.15
    assert withdrawals


def test_generator__streams_lazily():
    first = next(iter(generate(10_000_000, seed=1)))

    assert first["type"] in REGISTRY.names()


def test_zero_customers__yield_nothing():
    assert list(generate(0)) == []


def test_bad_arguments__are_refused():
    with pytest.raises(ValueError, match="customers"):
        list(generate(-1))
    with pytest.raises(ValueError, match="60 days"):
        list(generate(5, start=DEFAULT_START, end=DEFAULT_START))


def test_load_demo_if_empty__fills_an_empty_store_once(store, settings):
    settings = settings.model_copy(update={"demo": True, "demo_customers": 120})
    expected = sum(1 for _ in generate(120))

    loaded = load_demo_if_empty(store, settings)
    again = load_demo_if_empty(store, settings)

    assert loaded == expected and again == 0
    assert store.count() == expected


def test_load_demo_if_empty__does_nothing_when_demo_is_off(store, settings):
    assert load_demo_if_empty(store, settings.model_copy(update={"demo": False})) == 0
    assert store.head_position() is None


def test_load_demo_if_empty__leaves_a_store_with_events_alone(store, settings, api, make_event):
    api.post("/v1/events", json=make_event())

    assert load_demo_if_empty(store, settings.model_copy(update={"demo": True, "demo_customers": 50})) == 0
    assert store.count() == 1


def test_sizes__about_ten_events_per_customer(demo):
    assert 7 < len(demo) / 3000 < 15
    assert len(list(itertools.islice(generate(100), 10))) == 10
