"""Driving a journey processor against the real broker, for the processor tests: publish
stored events as the relay does, run a processor of a group, read and commit its
offsets as a member of the group, wait until its journeys equal what a replay gives."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from kafka import KafkaProducer

from application.demo import generate
from application.ingest import Ingestor
from application.replay import replay
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from streams.processors import JourneyProcessor
from streams.topics import event_record, partition_for_key

PARTITIONS = 3


def demo_store(path, seed: int, customers: int = 80) -> SQLiteEventStore:
    """A SQLite store holding ``customers`` demo journeys."""
    store = SQLiteEventStore(path)
    Ingestor(store).append([REGISTRY.validate(item) for item in generate(customers, seed=seed)])
    return store


def topic_names(prefix: str) -> dict[str, str]:
    """The events topic, journeys topic and group a test's processor uses, named apart."""
    return {"events_topic": f"{prefix}.events", "journeys_topic": f"{prefix}.journeys", "group_id": f"{prefix}-group"}


def processor(bootstrap: str, topics: dict[str, str], **settings) -> JourneyProcessor:
    """A processor of ``topics`` (``events_topic``, ``journeys_topic``, ``group_id``)."""
    return JourneyProcessor(bootstrap, partitions=PARTITIONS, **topics, **settings)


def publish(bootstrap: str, topic: str, recorded_events: Iterable) -> int:
    """Publish stored events as the relay does; returns how many."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    count = 0
    for recorded in recorded_events:
        key, value, headers = event_record(recorded)
        producer.send(topic, value, key=key, headers=headers, partition=partition_for_key(key, PARTITIONS))
        count += 1
    producer.flush()
    producer.close()
    return count


async def committed(bootstrap: str, topic: str, group_id: str) -> dict[TopicPartition, int]:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp: offset for tp in tps if (offset := await reader.committed(tp))}
    finally:
        await reader.stop()


def partition_ends(store) -> dict[int, int]:
    """Per partition, the offset after its last event once the whole log is published."""
    return dict(Counter(partition_for_key(event_record(recorded)[0], PARTITIONS) for recorded in store.read_all()))


async def wait_committed(bootstrap: str, topic: str, group_id: str, offsets: dict[int, int], timeout: float = 30) -> None:
    """Wait until the group's committed offsets on ``topic`` are ``offsets`` (per partition)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while {tp.partition: offset for tp, offset in (await committed(bootstrap, topic, group_id)).items()} != offsets:
        assert asyncio.get_running_loop().time() < deadline, f"{group_id} did not commit {offsets}"
        await asyncio.sleep(0.2)


async def commit(bootstrap: str, group_id: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit as a member of the group (the bundled broker ignores commits from outside it)."""
    member = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
                              session_timeout_ms=6000, heartbeat_interval_ms=1500)
    await member.start()
    try:
        member.subscribe([next(iter(offsets)).topic])
        deadline = asyncio.get_running_loop().time() + 30
        while member.assignment() != set(offsets):
            assert asyncio.get_running_loop().time() < deadline, "the member was not assigned every partition"
            await member.getmany(timeout_ms=200)
        await member.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
    finally:
        await member.stop()


@asynccontextmanager
async def running(journeys: JourneyProcessor) -> AsyncIterator[JourneyProcessor]:
    await journeys.start()
    runner = asyncio.create_task(journeys.run())
    try:
        yield journeys
    finally:
        await journeys.stop()
        await runner
        await journeys.close()


def folded(journeys: JourneyProcessor) -> dict[str, bytes]:
    """The processor's journeys, as bytes."""
    return {key: journey.to_bytes() for partition in journeys.state.partitions.values()
            for key, journey in partition.items()}


async def folded_until(journeys: JourneyProcessor, expected: dict[str, bytes], timeout: float = 60) -> dict:
    """The processor's journeys once they equal ``expected``, or when ``timeout`` passed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while folded(journeys) != expected and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    return folded(journeys)


async def stats_once(journeys: JourneyProcessor, condition, timeout: float = 30) -> dict:
    """The processor's stats once ``condition(stats)`` holds, or when ``timeout`` passed: what
    a batch does after its fold (publish, notice a lost topic) lands a moment after the
    journeys equal what was expected."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition(journeys.stats()) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    return journeys.stats()


def replayed(store) -> dict[str, bytes]:
    """Each identity's journey as a replay of the whole log gives it."""
    return {key: journey.to_bytes() for key, journey in replay(store).population.journeys.items()}
