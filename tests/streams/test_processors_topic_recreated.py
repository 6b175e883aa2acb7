"""The journey processor when ``touchpoints.events`` is deleted and recreated (the relay
does it after a broker lost its data, or a client's metadata request made the broker
auto-create it with its default layout) and the log is republished from position 0:
offsets committed into, and positions reached in, the previous incarnation count other
records, so the processor reads the new topic from its beginning and folds every event.

Real broker, topics and group of each test's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from events.sqlite.store import SQLiteEventStore
from projections.journey import IdentityJourney
from streams import processors
from streams.topics import describe_topics, event_record, logged_from_record
from tests.streams.processor_runs import (
    PARTITIONS, commit, committed, demo_store, folded_until, processor, publish, replayed, running, stats_once,
    topic_names
)

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path) -> Iterator[SQLiteEventStore]:
    store = demo_store(tmp_path / "events.db", seed=4242)
    yield store
    store.close()


@pytest.fixture
def topics(kafka_broker, unique_name) -> dict[str, str]:
    return topic_names(unique_name)


def latest_events(store, fraction: float) -> list:
    """The newest part of the log: what an auto-created topic receives from a relay whose
    page was in flight when the broker lost its data."""
    everything = list(store.read_all())
    return everything[int(len(everything) * (1 - fraction)):]


def recreate(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        before = describe_topics(admin, [topic])[topic][0]
        admin.delete_topics([topic])
        deadline = time.monotonic() + 10
        while topic in describe_topics(admin, [topic]) and time.monotonic() < deadline:
            time.sleep(0.05)
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        while topic not in describe_topics(admin, [topic]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert describe_topics(admin, [topic])[topic][0] != before
    finally:
        admin.close()


def journeys_of(recorded_events) -> dict[str, bytes]:
    """The journeys a fold of just these events gives."""
    journeys: dict[str, IdentityJourney] = {}
    for recorded in recorded_events:
        _, value, headers = event_record(recorded)
        logged = logged_from_record(value, headers)
        journeys.setdefault(logged.stream, IdentityJourney(logged.stream)).apply(logged)
    return {key: journey.to_bytes() for key, journey in journeys.items()}


def test_restarted_processor__offsets_committed_into_a_previous_incarnation_are_ignored(
    kafka_broker, topics, store
):
    bootstrap, events_topic = kafka_broker.bootstrap, topics["events_topic"]

    async def scenario():
        # given a group that folded the newest events of incarnation A and committed past them
        async with running(processor(bootstrap, topics)) as first:
            in_a = latest_events(store, 0.4)
            publish(bootstrap, events_topic, in_a)
            assert await folded_until(first, journeys_of(in_a)) == journeys_of(in_a)
        offsets_in_a = await committed(bootstrap, events_topic, topics["group_id"])
        assert offsets_in_a, "the first processor committed nothing: nothing was tested"

        # when the topic is recreated, a commit of A's offsets lands after it (as one in
        # flight does; the broker dropped the group's offsets with the old topic), and the
        # relay republishes the log from position 0
        recreate(bootstrap, events_topic)
        await commit(bootstrap, topics["group_id"], offsets_in_a)
        assert await committed(bootstrap, events_topic, topics["group_id"]) == offsets_in_a
        publish(bootstrap, events_topic, store.read_all())

        # then a new processor of the group folds every event of the log
        async with running(processor(bootstrap, topics)) as second:
            return await folded_until(second, replayed(store)), second.stats()

    folded, stats = asyncio.run(scenario())

    assert folded == replayed(store)
    assert stats["rewound_partitions"] >= 1


def test_running_processor__a_recreated_topic_is_read_from_its_beginning(kafka_broker, topics, store, monkeypatch):
    monkeypatch.setattr(processors, "ASSIGNMENT_CHECK_SECONDS", 0.5)
    bootstrap, events_topic = kafka_broker.bootstrap, topics["events_topic"]

    async def scenario():
        # given a running processor that folded the newest events of incarnation A
        async with running(processor(bootstrap, topics)) as journeys:
            in_a = latest_events(store, 0.4)
            publish(bootstrap, events_topic, in_a)
            assert await folded_until(journeys, journeys_of(in_a)) == journeys_of(in_a)

            # when the topic is recreated and the whole log republished into it
            recreate(bootstrap, events_topic)
            publish(bootstrap, events_topic, store.read_all())

            # then it folds every event of the log
            return await folded_until(journeys, replayed(store)), journeys.stats()

    folded, stats = asyncio.run(scenario())

    assert folded == replayed(store)
    assert stats["topic_recreations"] == 1


def test_recreated_events_topic__the_journeys_topic_is_renewed_and_holds_only_new_journeys(
    kafka_broker, topics, store, monkeypatch, read_topic
):
    monkeypatch.setattr(processors, "ASSIGNMENT_CHECK_SECONDS", 0.5)
    bootstrap, events_topic, journeys_topic = kafka_broker.bootstrap, topics["events_topic"], topics["journeys_topic"]

    async def scenario():
        # given a processor holding every partition that published the journeys of incarnation A
        async with running(processor(bootstrap, topics)) as journeys:
            in_a = latest_events(store, 0.4)
            publish(bootstrap, events_topic, in_a)
            assert await folded_until(journeys, journeys_of(in_a)) == journeys_of(in_a)
            journeys_topic_before = describe_topics_of(bootstrap, journeys_topic)[0]

            # when the events topic is recreated and the whole log republished into it
            recreate(bootstrap, events_topic)
            publish(bootstrap, events_topic, store.read_all())
            folded = await folded_until(journeys, replayed(store))
            return folded, journeys.stats(), journeys_topic_before, journeys._topic_id

    folded, stats, journeys_topic_before, new_events_id = asyncio.run(scenario())

    # then the journeys topic is a new one with the events topic's layout, whose records all
    # name the new incarnation (no journey folded or sent before the loss can be read after
    # newer ones), and the last journey of each key is the replay's
    assert folded == replayed(store)
    topic_id, partitions = describe_topics_of(bootstrap, journeys_topic)
    assert topic_id != journeys_topic_before and len(partitions) == PARTITIONS
    assert stats["journeys_topic_recreations"] == 1
    records = read_topic(bootstrap, journeys_topic, until=lambda got: {r.key.decode() for r in got} >= set(folded))
    assert {dict(r.headers)[processors.H_EVENTS_TOPIC_ID].decode() for r in records} == {new_events_id}
    assert {r.key.decode(): r.value for r in records} == replayed(store)


def describe_topics_of(bootstrap: str, topic: str) -> tuple[str | None, list[int]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return describe_topics(admin, [topic])[topic]
    finally:
        admin.close()


def test_journeys_topic_lost__the_processor_recreates_it_and_publishes_every_journey_again(
    kafka_broker, topics, store, read_topic
):
    bootstrap, events_topic, journeys_topic = kafka_broker.bootstrap, topics["events_topic"], topics["journeys_topic"]
    everything = list(store.read_all())
    older, newer = everything[:len(everything) * 3 // 5], everything[len(everything) * 3 // 5:]

    async def scenario():
        # given a processor holding every partition that published the journeys of the older events
        async with running(processor(bootstrap, topics)) as journeys:
            publish(bootstrap, events_topic, older)
            assert await folded_until(journeys, journeys_of(older)) == journeys_of(older)

            # when the journeys topic loses its records (deleted and created again, its offsets
            # start over) and the newer events arrive
            recreate(bootstrap, journeys_topic)
            publish(bootstrap, events_topic, newer)
            folded = await folded_until(journeys, replayed(store))
            # (the loss shows when the newer journeys' offsets are acknowledged, after the fold)
            return folded, await stats_once(journeys, lambda stats: stats["journeys_topic_recreations"] >= 1)

    folded, stats = asyncio.run(scenario())

    # then the processor recreated the topic and published every journey again, not only
    # those the newer events touched: the topic holds each identity's latest journey
    assert folded == replayed(store)
    assert stats["journeys_topic_recreations"] == 1
    records = read_topic(bootstrap, journeys_topic, until=lambda got: {r.key.decode() for r in got} >= set(folded))
    assert {r.key.decode(): r.value for r in records} == replayed(store)


def journeys_topic_of_another_layout(bootstrap: str, topics: dict[str, str], events_id_named: str | None) -> None:
    """The events topic as the processor creates it, and a journeys topic of 4 partitions (as
    the bundled broker auto-creates one) holding a journey that names ``events_id_named``."""
    from kafka import KafkaProducer
    from streams.topics import TopicSpec, ensure_topics

    ensure_topics(bootstrap, specs=[TopicSpec(topics["events_topic"], PARTITIONS)])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topics["journeys_topic"], 4, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    headers = [(processors.H_EVENTS_TOPIC_ID, (events_id_named or "").encode())]
    producer.send(topics["journeys_topic"], b"{}", key=b"customer:someone", partition=3, headers=headers)
    producer.flush()
    producer.close()


def test_worker_start__a_journeys_topic_of_another_layout_with_no_current_journey_is_recreated(
    kafka_broker, topics, store
):
    bootstrap, events_topic = kafka_broker.bootstrap, topics["events_topic"]
    # given a journeys topic of another layout whose journey names an events topic gone since
    journeys_topic_of_another_layout(bootstrap, topics, "an-events-topic-the-broker-lost")

    async def scenario():
        # when a processor starts and the log is published
        async with running(processor(bootstrap, topics)) as journeys:
            publish(bootstrap, events_topic, store.read_all())
            return await folded_until(journeys, replayed(store)), journeys.stats()

    folded, stats = asyncio.run(scenario())

    # then it recreated the journeys topic with the events topic's layout, and folds
    assert describe_topics_of(bootstrap, topics["journeys_topic"])[1] == list(range(PARTITIONS))
    assert stats["journeys_topic_recreations"] == 1
    assert folded == replayed(store)


def test_worker_start__a_journeys_topic_of_another_layout_holding_current_journeys_is_refused(kafka_broker, topics):
    bootstrap = kafka_broker.bootstrap
    # given a journeys topic of another layout whose journey names the events topic there now
    from streams.topics import TopicSpec, ensure_topics

    ensure_topics(bootstrap, specs=[TopicSpec(topics["events_topic"], PARTITIONS)])
    journeys_topic_of_another_layout(bootstrap, topics, describe_topics_of(bootstrap, topics["events_topic"])[0])

    # when a processor starts, then it refuses, naming the layouts, and leaves the topic as it was
    with pytest.raises(processors.TopicError, match="co-partitioned"):
        asyncio.run(processor(bootstrap, topics).start())
    assert describe_topics_of(bootstrap, topics["journeys_topic"])[1] == [0, 1, 2, 3]
