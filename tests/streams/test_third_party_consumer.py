"""A third-party Kafka client reads ``touchpoints.events`` as the README documents it: one
record per event, keyed by identity stream, the event's type in the ``type`` header and
its wire JSON as the value. The client is librdkafka's (``confluent-kafka``), not one of
the Python protocol implementations the platform itself uses."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import confluent_kafka
import pytest

from application.ingest import Ingestor
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from streams.checkpoint import SqliteCheckpointStore
from streams.relay import Relay

pytestmark = pytest.mark.slow


def read_with_librdkafka(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list:
    """Every record of ``topic`` from the beginning of each partition, by offset, no group."""
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"third-party-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
    })
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                         for p in sorted(partitions)])
        records, deadline = [], time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                assert message.error() is None, message.error()
                records.append(message)
        return records
    finally:
        consumer.close()


def test_librdkafka_consumer__reads_each_published_event_from_its_type_header_and_json_value(
    tmp_path: Path, kafka_broker, unique_name
):
    with SQLiteEventStore(tmp_path / "events.db") as store, SqliteCheckpointStore(tmp_path / "relay.db") as checkpoints:
        Ingestor(store).append([REGISTRY.validate(item) for item in (
            {"type": "ad_clicked", "occurred_at": "2024-05-02T09:30:00Z", "anonymous_id": "cookie:3f9a",
             "channel": "google_ads", "campaign": "spring", "event_id": str(uuid.uuid4())},
            {"type": "page_viewed", "occurred_at": "2024-05-02T09:31:00Z", "customer_id": "42", "channel": "web",
             "event_id": str(uuid.uuid4())},
            {"type": "order_placed", "occurred_at": "2024-05-02T09:40:00Z", "customer_id": "42",
             "data": {"order_id": "o-1", "revenue": "19.90", "currency": "EUR"}, "event_id": str(uuid.uuid4())},
        )])
        stored = {str(recorded.event_id): recorded for recorded in store.read_all()}
        relay = Relay(store, kafka_broker.bootstrap, checkpoints, topic=unique_name, partitions=3).start()
        try:
            assert relay.wait_for(store.head_position(), timeout=30)
        finally:
            relay.stop()

    records = read_with_librdkafka(kafka_broker.bootstrap, unique_name, count=len(stored))

    assert len(records) == len(stored)
    for record in records:
        headers = {name: value.decode() for name, value in record.headers()}
        event = json.loads(record.value())
        original = stored[event["event_id"]]
        assert headers["type"] == original.type and event == json.loads(original.data)
        assert record.key().decode() == headers["stream"] == original.stream
        assert int(headers["position"]) == original.position
