"""The record trimmer on the bundled broker: where every reader committed, and what
the broker lets it delete (tansu 0.6.0 implements no DeleteRecords)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from streams.broker import broker_answers
from streams.retention import REFUSALS_BEFORE_GIVING_UP, RecordTrimmer, trim_points
from streams.topics import EVENTS_TOPIC, INBOUND_TOPIC, platform_topics

PARTITIONS = 2
RECORDS_PER_PARTITION = 10


@pytest.fixture
def topic(kafka_broker, unique_name) -> str:
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.create_topics([NewTopic(unique_name, PARTITIONS, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    try:
        for n in range(RECORDS_PER_PARTITION):
            for partition in range(PARTITIONS):
                producer.send(unique_name, f"record {n}".encode(), partition=partition)
                producer.flush(10)  # one record per batch: a consumer may stop after any of them
    finally:
        producer.close()
    return unique_name


@pytest.fixture
def admin(kafka_broker) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        yield client
    finally:
        client.close()


def consume_and_commit(bootstrap: str, topic: str, group: str, counts: dict[int, int]) -> None:
    """A member of ``group`` reads ``counts[partition]`` records of each partition and commits."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in counts]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        read = {tp: 0 for tp in partitions}
        for _ in range(100):
            for tp, records in consumer.poll(timeout_ms=200).items():
                read[tp] = max(read[tp], records[-1].offset + 1)
            if all(read[tp] >= counts[tp.partition] for tp in partitions):
                break
        for tp in partitions:
            consumer.seek(tp, counts[tp.partition])
        consumer.commit()
    finally:
        consumer.close()


def test_platform_topics__events_and_inbound_are_kept_until_every_reader_committed():
    specs = {spec.name: spec for spec in platform_topics()}

    for topic in (EVENTS_TOPIC, INBOUND_TOPIC):
        assert specs[topic].config == {"retention.ms": "-1", "retention.bytes": "-1"}


@pytest.mark.slow
def test_trim_points__are_the_offsets_the_reading_group_committed(kafka_broker, admin, topic, unique_name):
    consume_and_commit(kafka_broker.bootstrap, topic, f"{unique_name}-g", {0: 7, 1: 4})

    points = trim_points(admin, topic, [f"{unique_name}-g"])

    assert points == {0: 7, 1: 4}


@pytest.mark.slow
def test_trim_points__a_required_group_that_has_not_committed_blocks_trimming(kafka_broker, admin, topic, unique_name):
    consume_and_commit(kafka_broker.bootstrap, topic, f"{unique_name}-fast", {0: 9, 1: 9})

    points = trim_points(admin, topic, [f"{unique_name}-fast", f"{unique_name}-not-started"])

    assert points == {0: 0, 1: 0}


@pytest.mark.slow
def test_trim_points__another_group_reading_the_topic_holds_trimming_back(kafka_broker, admin, topic, unique_name):
    consume_and_commit(kafka_broker.bootstrap, topic, f"{unique_name}-fast", {0: 9, 1: 9})
    consume_and_commit(kafka_broker.bootstrap, topic, f"{unique_name}-slow", {0: 3})

    points = trim_points(admin, topic, [f"{unique_name}-fast"])

    assert points == {0: 3, 1: 0}


@pytest.mark.slow
def test_trimmer__on_the_bundled_broker_deletes_nothing_and_says_it_cannot(kafka_broker, topic, unique_name, read_topic):
    consume_and_commit(kafka_broker.bootstrap, topic, f"{unique_name}-g", {0: 7, 1: 4})
    trimmer = RecordTrimmer(kafka_broker.bootstrap, {topic: [f"{unique_name}-g"]}, request_timeout=5)

    try:
        rounds = [trimmer.run_once() for _ in range(REFUSALS_BEFORE_GIVING_UP + 1)]
    finally:
        trimmer.close()

    assert rounds == [{}] * (REFUSALS_BEFORE_GIVING_UP + 1)
    assert trimmer.stats()["deletes_records"] is False
    assert broker_answers(kafka_broker.bootstrap)
    records = read_topic(kafka_broker.bootstrap, topic, until=lambda found: len(found) >= PARTITIONS * RECORDS_PER_PARTITION)
    assert len(records) == PARTITIONS * RECORDS_PER_PARTITION
