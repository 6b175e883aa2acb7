"""Kafka carries what the store holds: with sealing on, pseudonyms and ciphertext only."""

from __future__ import annotations

from pathlib import Path

import pytest

from application.privacy.policy import Sealing
from events.sqlite.store import SQLiteEventStore
from streams.checkpoint import SqliteCheckpointStore
from streams.relay import Relay
from tests.application.privacy.test_erasure import IDENTIFIERS, anna, ingest

pytestmark = pytest.mark.slow


def test_relay__records_of_sealed_events_hold_no_personal_value(tmp_path: Path, kafka_broker, unique_name, read_topic):
    sealing = Sealing.in_folder(tmp_path, customer_ids=True)
    with SQLiteEventStore(tmp_path / "events.db") as store, SqliteCheckpointStore(tmp_path / "relay.db") as checkpoints:
        ingest(store, sealing, anna())
        relay = Relay(store, kafka_broker.bootstrap, checkpoints, topic=unique_name, partitions=2).start()
        try:
            assert relay.wait_for(store.head_position(), timeout=30)
        finally:
            relay.stop()
        records = read_topic(kafka_broker.bootstrap, unique_name, until=lambda found: len(found) == len(anna()))
        stored = {recorded.data for recorded in store.read_all()}
    sealing.close()

    published = b"".join(record.key + record.value + b"".join(v for _, v in record.headers) for record in records)
    assert {record.value for record in records} == stored
    assert [identifier for identifier in IDENTIFIERS if identifier.encode() in published] == []
