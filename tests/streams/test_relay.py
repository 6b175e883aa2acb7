"""The relay publishes the log to Kafka at least once, checkpointing only what the
broker acknowledged, and republishes when the broker lost its data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from events.registry import REGISTRY, encode_body
from events.sqlite.store import SQLiteEventStore
from events.store import NewEvent, StreamAppend
from streams.broker import BundledBroker, free_port
from streams.checkpoint import SqliteCheckpointStore
from streams.relay import Relay
from streams.topics import partition_for_key, recorded_from_record

pytestmark = pytest.mark.slow

PARTITIONS = 3


def append_touches(store: SQLiteEventStore, count: int, identities: int = 20, chunk: int = 5000) -> None:
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for first in range(0, count, chunk):
        by_stream: dict[str, list[NewEvent]] = defaultdict(list)
        for n in range(first, min(first + chunk, count)):
            event = REGISTRY.validate({
                "event_id": str(uuid.uuid4()), "type": "page_viewed", "channel": "web",
                "occurred_at": (start + timedelta(seconds=n)).isoformat(), "anonymous_id": f"visitor-{n % identities}",
            })
            by_stream[event.stream].append(
                NewEvent(event.event_id, event.TYPE, event.SCHEMA_VERSION, event.occurred_at, encode_body(event))
            )
        store.append_batch([StreamAppend(stream, events) for stream, events in by_stream.items()])


def event_ids(records) -> list[str]:
    return [dict(record.headers)["event_id"].decode() for record in records]


def has_all(store: SQLiteEventStore):
    wanted = {str(recorded.event_id) for recorded in store.read_all()}
    return lambda records: wanted <= set(event_ids(records))


@pytest.fixture
def store(tmp_path: Path):
    with SQLiteEventStore(tmp_path / "events.db") as opened:
        yield opened


@pytest.fixture
def checkpoints(tmp_path: Path):
    with SqliteCheckpointStore(tmp_path / "relay.db") as opened:
        yield opened


@pytest.fixture
def relay_factory(store, checkpoints, kafka_broker, unique_name):
    started: list[Relay] = []

    def make(bootstrap: str | None = None, **options) -> Relay:
        options.setdefault("partitions", PARTITIONS)
        relay = Relay(store, bootstrap or kafka_broker.bootstrap, checkpoints, topic=unique_name, **options)
        started.append(relay.start())
        return relay

    yield make
    for relay in started:
        relay.stop()


def test_relay__publishes_every_event_keyed_by_its_identity_stream_with_the_envelope_in_headers(
    store, relay_factory, kafka_broker, unique_name, read_topic
):
    append_touches(store, 300)

    relay = relay_factory()

    assert relay.wait_for(store.head_position(), timeout=30)
    records = read_topic(kafka_broker.bootstrap, unique_name, until=has_all(store))
    stored = {recorded.event_id: recorded for recorded in store.read_all()}
    assert sorted(event_ids(records)) == sorted(str(event_id) for event_id in stored)
    for record in records:
        published = recorded_from_record(record.value, record.headers)
        original = stored[published.event_id]
        assert record.key == original.stream.encode()
        assert record.partition == partition_for_key(record.key, PARTITIONS)
        assert record.value == original.data
        assert (published.position, published.stream, published.stream_version, published.type,
                published.schema_version, published.occurred_at, published.recorded_at) == (
            original.position, original.stream, original.stream_version, original.type,
            original.schema_version, original.occurred_at, original.recorded_at)


def test_relay__keeps_each_identitys_events_in_log_order(store, relay_factory, kafka_broker, unique_name, read_topic):
    append_touches(store, 2000, identities=7)

    relay = relay_factory(batch_size=250)

    assert relay.wait_for(store.head_position(), timeout=30)
    records = read_topic(kafka_broker.bootstrap, unique_name, until=has_all(store))
    positions_by_key: dict[bytes, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        positions_by_key[record.key].append(int(dict(record.headers)["position"]))
    assert len(positions_by_key) == 7
    assert all(positions == sorted(positions) for positions in positions_by_key.values())
    assert sum(len(p) for p in positions_by_key.values()) == 2000


def test_relay__saves_a_checkpoint_only_for_events_the_broker_holds(
    store, relay_factory, checkpoints, kafka_broker, unique_name, read_topic
):
    append_touches(store, 1000)

    relay = relay_factory(batch_size=100)
    assert relay.wait_for(store.head_position(), timeout=30)
    relay.stop()

    saved = checkpoints.load(unique_name)
    records = read_topic(kafka_broker.bootstrap, unique_name, until=has_all(store))
    published = {int(dict(record.headers)["position"]) for record in records}
    assert saved.position == store.head_position()
    assert {r.position for r in store.read_all() if r.position <= saved.position} <= published
    assert set(saved.offsets) <= set(range(PARTITIONS)) and saved.topic_id
    last_on_partition = {record.partition: int(dict(record.headers)["position"])
                         for record in sorted(records, key=lambda r: (r.partition, r.offset))}
    assert saved.positions == last_on_partition


def test_relay_restarted__resumes_after_its_checkpoint_without_resending(
    store, relay_factory, kafka_broker, unique_name, read_topic
):
    append_touches(store, 500)
    first = relay_factory()
    assert first.wait_for(store.head_position(), timeout=30)
    first.stop()
    append_touches(store, 200)

    second = relay_factory()

    assert second.wait_for(store.head_position(), timeout=30)
    records = read_topic(kafka_broker.bootstrap, unique_name, until=has_all(store))
    assert second.stats()["sent"] == 200
    assert len(records) == len(set(event_ids(records))) == 700


def test_relay__follows_new_appends_while_running(store, relay_factory, kafka_broker, unique_name, read_topic):
    relay = relay_factory()
    append_touches(store, 50)
    assert relay.wait_for(store.head_position(), timeout=30)

    append_touches(store, 50)

    assert relay.wait_for(store.head_position(), timeout=30)
    assert relay.stats()["lag"] == 0
    assert len(set(event_ids(read_topic(kafka_broker.bootstrap, unique_name, until=has_all(store))))) == 100


def test_unreachable_broker__relay_keeps_retrying_and_shows_the_error(store, relay_factory):
    append_touches(store, 10)

    relay = relay_factory(bootstrap=f"127.0.0.1:{free_port()}", connect_timeout=0.5)

    deadline = time.monotonic() + 60
    while relay.stats()["last_error"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = relay.stats()
    assert stats["running"] and stats["checkpoint"] is None
    assert stats["last_error"]


def test_topic_recreated__relay_republishes_the_log_from_the_start(
    store, relay_factory, kafka_broker, unique_name, read_topic
):
    append_touches(store, 300)
    relay = relay_factory(check_interval=0.2)
    assert relay.wait_for(store.head_position(), timeout=30)

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    admin.delete_topics([unique_name])
    admin.create_topics([NewTopic(unique_name, PARTITIONS, 1)])
    admin.close()

    deadline = time.monotonic() + 30
    while relay.stats()["republishes"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert relay.wait_for(store.head_position(), timeout=30)
    records = read_topic(kafka_broker.bootstrap, unique_name, until=has_all(store))
    assert relay.stats()["republishes"] == 1
    assert len(set(event_ids(records))) == 300


def test_topic_recreated_before_anything_was_published__relay_adopts_it_without_a_republish(
    store, relay_factory, kafka_broker, unique_name, read_topic
):
    relay = relay_factory(check_interval=0.2)
    deadline = time.monotonic() + 30
    while relay.stats().get("partitions") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    admin.delete_topics([unique_name])
    admin.create_topics([NewTopic(unique_name, PARTITIONS, 1)])
    admin.close()
    time.sleep(0.5)  # a few data-loss checks

    append_touches(store, 100)

    assert relay.wait_for(store.head_position(), timeout=30)
    records = read_topic(kafka_broker.bootstrap, unique_name, until=has_all(store))
    assert relay.stats()["republishes"] == 0
    assert len(records) == len(set(event_ids(records))) == 100


def test_broker_restarted__relay_republishes_what_the_memory_broker_lost(store, checkpoints, tmp_path, read_topic):
    append_touches(store, 2000)
    with BundledBroker(data_dir=tmp_path / "broker") as broker:
        relay = Relay(store, broker.bootstrap, checkpoints, partitions=PARTITIONS, check_interval=0.2).start()
        try:
            assert relay.wait_for(store.head_position(), timeout=30)

            broker.restart()

            deadline = time.monotonic() + 60
            while relay.stats()["republishes"] == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert relay.wait_for(store.head_position(), timeout=60)
            records = read_topic(broker.bootstrap, relay.topic, until=has_all(store))
            stats = relay.stats()
        finally:
            relay.stop()
    # the relay notices either the missing topic or, if it recreated it first, the new topic id
    assert stats["republishes"] == 1 and relay.topic in stats["last_republish_reason"]
    assert len(set(event_ids(records))) == 2000


def _start_relay_process(tmp_path: Path, bootstrap: str, topic: str, batch_size: int) -> subprocess.Popen:
    env = {**os.environ, "TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_LOG_LEVEL": "WARNING"}
    command = [
        sys.executable, "-m", "consumers.cli.main", "relay", "--kafka", bootstrap,
        "--store", f"sqlite:///{tmp_path / 'events.db'}", "--topic", topic,
        "--partitions", str(PARTITIONS), "--batch-size", str(batch_size), "--stats-interval", "0",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_checkpoint(checkpoints: SqliteCheckpointStore, topic: str, at_least: int, process, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        position = checkpoints.load(topic).position
        if position is not None and position >= at_least:
            return position
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        time.sleep(0.01)
    raise AssertionError(f"the relay's checkpoint did not reach {at_least} within {timeout} s")


def test_relay_process_sigkilled_mid_stream__restarted_relay_delivers_every_event_at_least_once(
    store, checkpoints, tmp_path, kafka_broker, unique_name, read_topic
):
    total, batch_size = 60_000, 500
    append_touches(store, total, identities=500)
    head = store.head_position()
    first = _start_relay_process(tmp_path, kafka_broker.bootstrap, unique_name, batch_size)
    try:
        _wait_for_checkpoint(checkpoints, unique_name, head // 4, first, timeout=120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    at_kill = checkpoints.load(unique_name).position
    published_at_kill = {int(dict(r.headers)["position"]) for r in read_topic(kafka_broker.bootstrap, unique_name)}

    second = _start_relay_process(tmp_path, kafka_broker.bootstrap, unique_name, batch_size)
    try:
        _wait_for_checkpoint(checkpoints, unique_name, head, second, timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0

    assert at_kill < head, "the relay was killed after it had finished: nothing was tested"
    assert {r.position for r in store.read_all(0, limit=None) if r.position <= at_kill} <= published_at_kill
    records = read_topic(kafka_broker.bootstrap, unique_name, until=has_all(store))
    counts = Counter(event_ids(records))
    duplicates = sum(counts.values()) - len(counts)
    assert set(counts) == {str(r.event_id) for r in store.read_all()}
    # only the page in flight at the kill can be sent twice
    assert duplicates <= batch_size


def test_relay_command_without_a_broker__exits_2_naming_the_variable(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TOUCHPOINTS_KAFKA"}
    env["TOUCHPOINTS_DATA"] = str(tmp_path)

    finished = subprocess.run([sys.executable, "-m", "consumers.cli.main", "relay"],
                              env=env, capture_output=True, text=True, timeout=60)

    assert finished.returncode == 2 and "TOUCHPOINTS_KAFKA" in finished.stderr


def test_relay__compresses_its_batches_with_the_configured_codec(tmp_path):
    # given relays made with the default, another codec, none, and an explicit producer setting
    store = SQLiteEventStore(tmp_path / "events.db")
    checkpoints = SqliteCheckpointStore(tmp_path / "relay.db")
    try:
        def codec(**options) -> str | None:
            return Relay(store, "127.0.0.1:1", checkpoints, **options).producer_config["compression_type"]

        # then the producer's compression is zstd by default, the codec given, or none at all
        assert codec() == "zstd"
        assert codec(compression="lz4") == "lz4"
        assert codec(compression="none") is None
        assert codec(compression="none", producer_config={"compression_type": "gzip"}) == "gzip"
    finally:
        checkpoints.close()
        store.close()
