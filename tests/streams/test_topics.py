"""Platform topics: created idempotently, co-partitioned, and the events record format."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from events.registry import decode_recorded
from events.store import RecordedEvent
from streams.topics import (
    DEADLETTER_TOPIC,
    EVENTS_TOPIC,
    JOURNEYS_TOPIC,
    MalformedRecord,
    TopicError,
    TopicSpec,
    describe_topics,
    ensure_topics,
    event_record,
    event_records,
    logged_from_record,
    record_decoder,
    partition_for_key,
    platform_topics,
    recorded_from_record,
    recreate_topic,
)


def a_recorded_event() -> RecordedEvent:
    return RecordedEvent(
        position=17, stream="customer-42", stream_version=3, event_id=uuid.uuid4(), type="order_placed",
        schema_version=2, occurred_at=datetime(2024, 5, 1, 9, 30, 0, 123456, tzinfo=timezone.utc),
        recorded_at=datetime(2024, 5, 1, 9, 30, 1, tzinfo=timezone.utc),
        data=b'{"event_id":"00000000-0000-0000-0000-000000000001","occurred_at":"2024-05-01T09:30:00.123456Z",'
             b'"customer_id":"42","data":{"order_id":"o-1","revenue":"10.00","currency":"EUR"}}',
        metadata=b"{}",
    )


def test_event_record__is_keyed_by_stream_and_reads_back_as_the_same_envelope():
    original = a_recorded_event()

    key, value, headers = event_record(original)

    assert key == b"customer-42" and value == original.data
    assert recorded_from_record(value, headers) == original


def test_event_record__accepts_headers_as_a_mapping_too():
    original = a_recorded_event()
    _, value, headers = event_record(original)

    assert recorded_from_record(value, dict(headers)) == original


def test_event_records__of_a_page_are_each_events_record_in_order():
    first = a_recorded_event()
    same_append = replace(first, position=18, event_id=uuid.uuid4(), stream_version=4)
    later = replace(first, position=19, event_id=uuid.uuid4(), recorded_at=datetime(2024, 5, 2, tzinfo=timezone.utc))
    page = [first, same_append, later]

    records = event_records(page)

    assert records == [event_record(recorded) for recorded in page]
    assert [recorded_from_record(value, headers) for _, value, headers in records] == page


def test_record_without_a_position_header__is_refused_naming_the_header():
    _, value, headers = event_record(a_recorded_event())

    with pytest.raises(MalformedRecord, match="'position'"):
        recorded_from_record(value, [(k, v) for k, v in headers if k != "position"])


def test_record_with_an_unreadable_header__is_refused():
    _, value, headers = event_record(a_recorded_event())

    with pytest.raises(MalformedRecord, match="unreadable"):
        recorded_from_record(value, [(k, b"soon" if k == "recorded_at" else v) for k, v in headers])


def test_logged_from_record__decodes_like_the_store_does():
    original = a_recorded_event()
    _, value, headers = event_record(original)

    assert logged_from_record(value, headers) == decode_recorded(original)
    assert logged_from_record(value, dict(headers)) == decode_recorded(original)


@pytest.mark.parametrize("header", ["type", "schema_version", "position", "stream", "recorded_at"])
def test_logged_from_record__refuses_a_record_without_a_header_it_needs_naming_it(header):
    _, value, headers = event_record(a_recorded_event())

    with pytest.raises(MalformedRecord, match=f"'{header}'"):
        logged_from_record(value, [(k, v) for k, v in headers if k != header])


def test_record_decoder__parses_one_recorded_at_once_for_the_records_of_one_append():
    _, value, headers = event_record(a_recorded_event())
    decode = record_decoder()

    first, second = decode(value, headers), decode(value, list(headers))

    assert first == second and first.recorded_at is second.recorded_at


def test_platform_topics__journeys_compacted_and_copartitioned_with_events():
    specs = {spec.name: spec for spec in platform_topics(8)}

    assert specs[EVENTS_TOPIC].partitions == specs[JOURNEYS_TOPIC].partitions == 8
    assert specs[JOURNEYS_TOPIC].config == {"cleanup.policy": "compact"}
    assert specs[DEADLETTER_TOPIC].partitions == 1


@pytest.mark.slow
def test_ensure_topics__creates_what_is_missing_and_is_idempotent(kafka_broker, unique_name):
    specs = [TopicSpec(f"{unique_name}.a", 4), TopicSpec(f"{unique_name}.b", 1)]

    first = ensure_topics(kafka_broker.bootstrap, specs=specs)
    second = ensure_topics(kafka_broker.bootstrap, specs=specs)

    assert first == second == {f"{unique_name}.a": 4, f"{unique_name}.b": 1}


@pytest.mark.slow
@pytest.mark.parametrize("before", [None, 4], ids=["missing", "other-layout"])
def test_recreate_topic__leaves_the_topic_new_with_its_layout_whether_or_not_it_was_there(
    kafka_broker, unique_name, before
):
    # given a topic that a broker which lost its data does not have, or auto-created with its own layout
    spec = TopicSpec(f"{unique_name}.j", 3, {"cleanup.policy": "compact"})
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        if before:
            admin.create_topics([NewTopic(spec.name, before, 1)])
            old_id = describe_topics(admin, [spec.name])[spec.name][0]

        # when it is recreated
        topic_id, partitions = recreate_topic(admin, kafka_broker.bootstrap, spec)

        # then it exists, anew, with the spec's partitions
        assert partitions == [0, 1, 2]
        assert describe_topics(admin, [spec.name])[spec.name] == (topic_id, [0, 1, 2])
        if before:
            assert topic_id != old_id
    finally:
        admin.close()


@pytest.mark.slow
def test_ensure_topics__refuses_events_and_journeys_with_different_partition_counts(tmp_path):
    from streams.broker import BundledBroker

    with BundledBroker(data_dir=tmp_path) as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(JOURNEYS_TOPIC, 2, 1)])
        admin.close()

        with pytest.raises(TopicError, match="co-partitioned"):
            ensure_topics(broker.bootstrap, 6)


@pytest.mark.slow
def test_partition_for_key__is_where_a_kafka_producer_puts_the_key(kafka_broker, unique_name):
    ensure_topics(kafka_broker.bootstrap, specs=[TopicSpec(unique_name, 6)])
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    keys = [f"customer-{n}".encode() for n in range(40)]

    placed = {key: producer.send(unique_name, key=key, value=b"x").get(10).partition for key in keys}
    producer.close()

    assert placed == {key: partition_for_key(key, 6) for key in keys}
