"""The bundled broker's planned restart (``streams.broker_recycle``): over its memory budget
``touchpoints up`` restarts it empty, and nothing is lost: the worker's journeys are handed
over, unread inbound records and dead letters are carried over, and the views go on to equal
a replay of the log."""

from __future__ import annotations

import os

import httpx
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from application.demo import generate
from consumers.platform import Platform
from streams.broker_recycle import (
    IDLE_SECONDS, MIN_SECONDS_BETWEEN, QuietWatch, put_back, read_unconsumed, resident_mib,
    what_holds_back, why_restart,
)
from streams.topics import DEADLETTER_TOPIC, INBOUND_TOPIC
from tests.conftest import read_topic_records
from tests.streams.conftest import PLATFORM_HEADERS, append_events, assert_views_converge, platform_settings, wait_until
from tests.streams.test_retention import consume_and_commit


def test_quiet_watch__is_quiet_once_the_offsets_stood_still_for_the_quiet_time():
    # given a watch of 10 s that sees offsets at t=0
    watch = QuietWatch(quiet=10)
    assert not watch.is_quiet({0: 5}, now=0)
    # when they stay put for 9 s, then 10 s
    # then it is quiet only at 10 s
    assert not watch.is_quiet({0: 5}, now=9)
    assert watch.is_quiet({0: 5}, now=10)
    # and a record produced starts the wait again
    assert not watch.is_quiet({0: 6}, now=11)
    assert not watch.is_quiet({0: 6}, now=20)
    assert watch.is_quiet({0: 6}, now=21)


def test_resident_mib__of_this_process_and_of_none():
    assert resident_mib(os.getpid()) > 1
    assert resident_mib(None) is None
    assert resident_mib(2 ** 22 + 1) is None  # above Linux's pid limit: no such process


def test_read_unconsumed__reads_the_inbound_records_past_every_commit_and_every_dead_letter__put_back_restores_them(
    kafka_broker, unique_name
):
    # given an inbound topic of 2 partitions (4 records each) of which the inbound group committed 3 and 1,
    # and a dead-letter topic holding 2 records with headers
    inbound, deadletter, group = f"{unique_name}-in", f"{unique_name}-dl", f"{unique_name}-g"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.create_topics([NewTopic(inbound, 2, 1), NewTopic(deadletter, 1, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    try:
        for n in range(4):
            for partition in range(2):
                producer.send(inbound, f"event {partition}.{n}".encode(), key=f"k{n}".encode(), partition=partition)
        for n in range(2):
            producer.send(deadletter, f"bad {n}".encode(), headers=[("error", b"why")])
        producer.flush(10)
    finally:
        producer.close()
    consume_and_commit(kafka_broker.bootstrap, inbound, group, {0: 3, 1: 1})

    # when they are read to carry over
    carried = read_unconsumed(kafka_broker.bootstrap, inbound_groups=[group], inbound_topic=inbound,
                              deadletter_topic=deadletter)

    # then the unread inbound records, in order, and every dead letter with its headers
    assert sorted((p, v) for p, _, v, _ in carried.records[inbound]) == [
        (0, b"event 0.3"), (1, b"event 1.1"), (1, b"event 1.2"), (1, b"event 1.3")]
    assert [(v, h) for _, _, v, h in carried.records[deadletter]] == [(b"bad 0", [("error", b"why")]),
                                                                       (b"bad 1", [("error", b"why")])]
    assert carried.count == 6

    # and put back into empty topics, they are there again, in their partitions and order
    copy_in, copy_dl = f"{unique_name}-in2", f"{unique_name}-dl2"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.create_topics([NewTopic(copy_in, 2, 1), NewTopic(copy_dl, 1, 1)])
    finally:
        admin.close()
    carried.records = {copy_in: carried.records[inbound], copy_dl: carried.records[deadletter]}
    assert put_back(kafka_broker.bootstrap, carried) == 6
    again = read_topic_records(kafka_broker.bootstrap, copy_in, until=lambda rs: len(rs) >= 4)
    assert [(r.partition, r.value, r.key) for r in sorted(again, key=lambda r: (r.partition, r.offset))] == [
        (0, b"event 0.3", b"k3"), (1, b"event 1.1", b"k1"), (1, b"event 1.2", b"k2"), (1, b"event 1.3", b"k3")]
    letters = read_topic_records(kafka_broker.bootstrap, copy_dl, until=lambda rs: len(rs) >= 2)
    assert [(r.value, list(r.headers)) for r in letters] == [(b"bad 0", [("error", b"why")]),
                                                             (b"bad 1", [("error", b"why")])]


@pytest.mark.slow
def test_platform_over_its_broker_budget__restarts_the_broker_and_loses_nothing(tmp_path):
    # given `touchpoints up` on its bundled broker, with a budget the empty broker exceeds already,
    # that folded a log, and a record no schema accepts produced by a service to the inbound topic
    settings = platform_settings(tmp_path, "").model_copy(update={"broker_memory_budget_mib": 1})
    with Platform(settings) as platform, \
            httpx.Client(base_url=platform.base_url, headers=PLATFORM_HEADERS, timeout=10) as api:
        old_pid = platform.broker.pid
        platform.wait_ready()
        first = list(generate(60, seed=71))
        append_events(platform, first)
        producer = KafkaProducer(bootstrap_servers=platform.bootstrap, acks="all")
        producer.send(INBOUND_TOPIC, b"not an event", key=b"svc")
        producer.flush(10)
        producer.close()
        assert_views_converge(platform, timeout=90)
        head_before = platform.store.head_position()

        # when the supervisor finds the broker over its budget (and the inbound topic quiet for 10 s)
        wait_until(lambda: platform.broker_recycles, 90, "a planned broker restart")
        recycle = platform.broker_recycles[0]
        kafka = api.get("/healthz").json()["components"]["kafka"]
        more = list(generate(20, seed=72))
        append_events(platform, more)

        # then the broker was restarted, the worker's journeys handed over (the relay resumed after them)
        assert recycle["outcome"] == "restarted", recycle
        assert platform.broker.pid != old_pid
        assert 0 < recycle["relay_resumes_after"] <= head_before
        assert kafka["restarts_planned"] >= 1 and kafka["memory"]["budget_mib"] == 1
        # and the views go on to equal a replay of the whole log, the new events included
        assert_views_converge(platform, timeout=120)
        processor = wait_until(lambda: platform.worker_health().get("processor"), 10, "the new worker's stats")
        assert processor["base_journeys"] > 0
        assert processor["events"] <= len(more) + (head_before - recycle["relay_resumes_after"])
        # and the dead letter the old broker held is in the new one
        letters = read_topic_records(platform.bootstrap, DEADLETTER_TOPIC, until=lambda rs: len(rs) >= 1)
        assert len(letters) == 1 and b"not an event" in letters[0].value
        assert dict(letters[0].headers)["source_topic"] == INBOUND_TOPIC.encode()


def test_why_restart__over_the_budget__or_over_half_of_it_with_the_log_idle_and_the_views_at_its_head():
    asked: list[bool] = []

    def at_head() -> bool:
        asked.append(True)
        return True

    # over the budget: at once, whatever the log does
    assert "over the budget of 768 MiB" in why_restart(800, 768, log_idle_for=0, views_at_head=at_head)
    # within it, over half: only once the log was idle long enough, the views at its head
    assert why_restart(500, 768, log_idle_for=IDLE_SECONDS - 1, views_at_head=at_head) is None
    assert asked == []  # not asked while the log moves
    assert "idle for 30 s" in why_restart(500, 768, log_idle_for=IDLE_SECONDS, views_at_head=at_head)
    assert why_restart(500, 768, log_idle_for=IDLE_SECONDS, views_at_head=lambda: False) is None
    # under half, or no budget, or no broker: never
    assert why_restart(300, 768, log_idle_for=1e9, views_at_head=at_head) is None
    assert why_restart(10_000, 0, log_idle_for=0, views_at_head=at_head) is None
    assert why_restart(None, 768, log_idle_for=0, views_at_head=at_head) is None


def test_what_holds_back__each_condition_in_turn():
    free = dict(since_last=None, taking_up=False, running=True, inbound_quiet=True)
    assert what_holds_back(**free) is None
    assert "since the last restart" in what_holds_back(**{**free, "since_last": MIN_SECONDS_BETWEEN - 1})
    assert what_holds_back(**{**free, "since_last": MIN_SECONDS_BETWEEN}) is None
    assert "taken up" in what_holds_back(**{**free, "taking_up": True})
    assert "to run" in what_holds_back(**{**free, "running": False})
    assert "touchpoints.inbound" in what_holds_back(**{**free, "inbound_quiet": False})
