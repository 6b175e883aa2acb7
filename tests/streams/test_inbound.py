"""Kafka ingestion: records produced to touchpoints.inbound reach the store and the
views through the real Faust worker; invalid ones land in touchpoints.deadletter."""

from __future__ import annotations

import asyncio
import base64
import uuid

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from application.demo import generate
from application.ingest import Ingestor
from events.factory import open_store
from events.sqlite.store import SQLiteEventStore
from events.store import StoreUnavailable
from streams.inbound import InboundHandler, InboundRecord
from streams.topics import DEADLETTER_TOPIC, INBOUND_TOPIC
from tests.streams.conftest import assert_views_converge, wait_until



@pytest.fixture(scope="module")
def producer(live_platform):
    producer = KafkaProducer(bootstrap_servers=live_platform.bootstrap, acks="all")
    yield producer
    producer.close()


def produce(producer, values: list[bytes], key: bytes = b"inbound-test") -> list[tuple[int, int]]:
    """Send records and return their (partition, offset)."""
    futures = [producer.send(INBOUND_TOPIC, value, key=key) for value in values]
    producer.flush()
    return [(f.get(10).partition, f.get(10).offset) for f in futures]


def stored_ids(platform) -> set[str]:
    store = open_store(platform.settings.store_url)
    try:
        return {str(recorded.event_id) for recorded in store.read_all()}
    finally:
        store.close()


def dead_letters(platform) -> list:
    consumer = KafkaConsumer(bootstrap_servers=platform.bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(DEADLETTER_TOPIC, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        found = []
        while True:
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                return found
            found.extend(batch[tp])
    finally:
        consumer.close()


def wire(**overrides) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "email_opened", "occurred_at": "2025-02-01T08:00:00Z",
            "customer_id": "inbound-dora", "channel": "email", **overrides}


@pytest.mark.slow
def test_valid_inbound_records__are_appended_to_the_store_and_reach_the_views(live_platform, producer):
    events = list(generate(60, seed=9090))

    produce(producer, [orjson.dumps(event) for event in events])

    wanted = {event["event_id"] for event in events}
    wait_until(lambda: wanted <= stored_ids(live_platform), 60, "the inbound events in the store")
    assert_views_converge(live_platform)


@pytest.mark.slow
def test_redelivered_inbound_record__is_stored_once(live_platform, producer):
    event = wire()
    before = len(stored_ids(live_platform))

    produce(producer, [orjson.dumps(event)] * 3)

    wait_until(lambda: event["event_id"] in stored_ids(live_platform), 30, "the inbound event in the store")
    wait_until(lambda: live_platform.worker_health()["inbound"]["received"] >= 3, 30, "all three records handled")
    assert len(stored_ids(live_platform)) == before + 1


@pytest.mark.slow
def test_invalid_inbound_records__land_in_the_deadletter_topic_with_field_reason_and_source(live_platform, producer):
    bad = [
        b"{not json",
        orjson.dumps(wire(type="parcel_teleported")),
        orjson.dumps(wire(channel="Not A Channel!")),
        b"\xff\xfe binary",
    ]
    good = wire(customer_id="inbound-emil")

    sources = produce(producer, [*bad, orjson.dumps(good)], key=b"inbound-mixed")

    def letters_for_our_records():
        wanted = {offset for _, offset in sources[:4]}
        found = {int(dict(r.headers)["source_offset"]): r for r in dead_letters(live_platform)
                 if r.key == b"inbound-mixed" and int(dict(r.headers)["source_offset"]) in wanted}
        return found if len(found) == 4 else None

    letters = wait_until(letters_for_our_records, 30, "four dead letters", interval=0.3)
    by_original = {}
    for record in letters.values():
        document = orjson.loads(record.value)
        headers = dict(record.headers)
        assert document["source"]["topic"] == INBOUND_TOPIC
        assert (document["source"]["partition"], document["source"]["offset"]) in sources
        assert headers["source_partition"] == str(document["source"]["partition"]).encode()
        assert document["errors"] and headers["error_field"] == document["errors"][0]["field"].encode()
        by_original[base64.b64decode(document["original_base64"])] = document
    assert set(by_original) == set(bad)
    assert "malformed JSON" in by_original[b"{not json"]["errors"][0]["reason"]
    assert by_original[bad[1]]["errors"][0]["field"] == "type"
    assert "parcel_teleported" in by_original[bad[1]]["errors"][0]["reason"]
    assert by_original[bad[2]]["errors"][0]["field"] == "channel"
    assert by_original[b"\xff\xfe binary"]["original"] is None
    wait_until(lambda: good["event_id"] in stored_ids(live_platform), 30, "the valid record of the batch stored")


# --- the handler alone (no broker): a store outage loses nothing ----------------------------


class FlakyStore:
    """The real SQLite store behind a switch that makes appends fail like an outage."""

    def __init__(self, store, failures: int):
        self.store = store
        self.failures = failures

    def append_batch(self, appends):
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("database is locked (simulated outage)")
        return self.store.append_batch(appends)


def collect_dead_letters(sent: list):
    """A ``send_dead_letter`` that keeps every letter and acknowledges it at once."""

    async def send_dead_letter(key, value, headers):
        sent.append((key, value, headers))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    return send_dead_letter


def test_inbound_handler__retries_through_a_store_outage_and_then_stores_every_valid_record(tmp_path):
    store = SQLiteEventStore(tmp_path / "events.db")
    sent = []
    handler = InboundHandler(Ingestor(FlakyStore(store, failures=2)), collect_dead_letters(sent), max_backoff=0.01)
    events = [wire(customer_id=f"outage-{n}") for n in range(5)]
    records = [InboundRecord(INBOUND_TOPIC, 0, n, b"k", orjson.dumps(e)) for n, e in enumerate(events)]

    asyncio.run(handler.handle([*records, InboundRecord(INBOUND_TOPIC, 0, 5, b"k", b"[]")]))

    assert {str(r.event_id) for r in store.read_all()} == {e["event_id"] for e in events}
    assert handler.counts["retries"] == 2 and handler.counts["appended"] == 5
    assert len(sent) == 1 and dict(sent[0][2])["source_offset"] == b"5"
    store.close()


def test_inbound_handler__positions_follow_record_order_across_streams_like_every_ingestion(tmp_path):
    store = SQLiteEventStore(tmp_path / "events.db")
    sent = []
    handler = InboundHandler(Ingestor(store), collect_dead_letters(sent))
    events = [wire(customer_id=name) for name in ("order-ann", "order-bob", "order-ann", "order-bob")]
    values = [orjson.dumps(events[0]), None, orjson.dumps(events[1]), b"{not json", orjson.dumps(events[2]),
              orjson.dumps(wire(type="parcel_teleported")), orjson.dumps(events[3])]

    asyncio.run(handler.handle([InboundRecord(INBOUND_TOPIC, 0, n, b"k", v) for n, v in enumerate(values)]))

    assert [str(r.event_id) for r in store.read_all()] == [e["event_id"] for e in events]
    assert [dict(headers)["source_offset"] for _, _, headers in sent] == [b"1", b"3", b"5"]
    store.close()
