"""Shared session fixtures.

``kafka_broker``: ONE bundled tansu broker for the whole test session, on a free
loopback port. It yields the ``streams.broker.BundledBroker`` itself:
``.bootstrap`` (``"127.0.0.1:PORT"``), ``.restart()`` (kill + start on the same
port; everything in it is lost), ``.stop()``. A test that stops it need not
start it again: the broker is brought back before the next test.

Topics are shared by every test in the session: use unique topic names or
consumer groups per test (``unique_name``), or read from offsets you recorded.

``read_topic(bootstrap, topic, *, until=None, timeout=30.0, idle=0.5)``: every record
of a topic from offset 0 of each partition (no consumer group), read until
``until(records)`` is true and nothing new arrived for ``idle`` seconds. Do not
stop at the partitions' end offsets: tansu 0.6 reports the last batch's base
offset + 1 as a partition's end, not the offset after its last record.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from streams.broker import BundledBroker, free_port

__all__ = ["free_port"]

_session_broker: BundledBroker | None = None


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundledBroker]:
    global _session_broker
    broker = BundledBroker(data_dir=tmp_path_factory.mktemp("kafka_broker"))
    broker.start()
    _session_broker = broker
    try:
        yield broker
    finally:
        _session_broker = None
        broker.close()


@pytest.fixture(autouse=True)
def _session_broker_running() -> Iterator[None]:
    """Bring the session broker back if a test stopped it (same port, empty)."""
    yield
    if _session_broker is not None and not _session_broker.running:
        _session_broker.start()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, for topics and consumer groups."""
    safe = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:40]
    return f"t-{safe}-{uuid.uuid4().hex[:8]}"


def read_topic_records(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list], bool] | None = None,
    timeout: float = 30.0,
    idle: float = 0.5,
) -> list:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="test-read-topic")
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.1)
        if not partitions:
            return []
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list = []
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=100)
            fresh = [record for batch in polled.values() for record in batch]
            if fresh:
                records.extend(fresh)
                last_new = time.monotonic()
            elif time.monotonic() - last_new >= idle and (until is None or until(records)):
                break
        return records
    finally:
        consumer.close()


@pytest.fixture
def read_topic() -> Callable[..., list]:
    return read_topic_records
