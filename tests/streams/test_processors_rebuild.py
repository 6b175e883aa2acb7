"""The journey processor after the journey format changed (``projections.journey.VERSION``):
the journeys on the topic are of the older format, unreadable to the new code, and the
group's committed offsets sit past the events they were folded from. The processor
rebuilds: it reads the events again from the beginning and folds every one.

Real broker, topics and group of each test's own; the older format is the current code
with ``VERSION`` one lower while it ran."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from events.sqlite.store import SQLiteEventStore
from projections import journey as journey_module
from streams.view_feed import decode_journeys
from tests.streams.processor_runs import (
    PARTITIONS, demo_store, folded, folded_until, partition_ends, processor, publish, replayed, running,
    topic_names, wait_committed
)

pytestmark = pytest.mark.slow

CURRENT = journey_module.VERSION


@pytest.fixture
def store(tmp_path) -> Iterator[SQLiteEventStore]:
    store = demo_store(tmp_path / "events.db", seed=1414)
    yield store
    store.close()


@pytest.fixture
def topics(kafka_broker, unique_name) -> dict[str, str]:
    return topic_names(unique_name)


async def fold_in_the_older_format(bootstrap: str, topics: dict[str, str], store, monkeypatch) -> None:
    """The log is published (the processor creates the topics first) and a processor of
    the previous format version folds it, publishes its journeys and commits past every event."""
    ends = partition_ends(store)
    monkeypatch.setattr(journey_module, "VERSION", CURRENT - 1)
    try:
        async with running(processor(bootstrap, topics)) as old:
            publish(bootstrap, topics["events_topic"], store.read_all())
            assert await folded_until(old, replayed(store)) == replayed(store)
            await wait_committed(bootstrap, topics["events_topic"], topics["group_id"], ends)
    finally:
        monkeypatch.setattr(journey_module, "VERSION", CURRENT)


def test_upgraded_processor__journeys_of_an_older_format_are_rebuilt_from_every_event(
    kafka_broker, topics, store, monkeypatch, caplog
):
    bootstrap = kafka_broker.bootstrap
    caplog.set_level(logging.INFO, logger="streams.processors")

    async def scenario():
        # given the group's journeys folded in the older format, its offsets committed past every event
        await fold_in_the_older_format(bootstrap, topics, store, monkeypatch)
        caplog.clear()

        # when a processor of the current format is assigned the partitions
        async with running(processor(bootstrap, topics)) as upgraded:
            journeys = await folded_until(upgraded, replayed(store))
            deadline = asyncio.get_running_loop().time() + 30
            while upgraded.stats()["rebuilding"] and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            return journeys, upgraded.stats()

    journeys, stats = asyncio.run(scenario())

    # then it folded every event again: its journeys equal a replay of the log
    assert journeys == replayed(store)
    # and its stats and log show each partition's rebuild, started and finished, nothing missing
    assert stats["unreadable_journeys"] == len(replayed(store))
    assert stats["rebuilds_started"] == stats["rebuilds_completed"] == PARTITIONS
    assert stats["rebuilding"] == [] and stats["rebuilds_missing_events"] == 0 and stats["lag"] == 0
    messages = [record.getMessage() for record in caplog.records]
    assert sum("rebuilding partition" in message and f"format version {CURRENT - 1}" in message
               for message in messages) == PARTITIONS
    assert sum(" rebuilt (" in message for message in messages) == PARTITIONS


def test_upgraded_processor__the_journeys_topic_then_gives_the_view_feed_what_a_replay_gives(
    kafka_broker, topics, store, monkeypatch, read_topic
):
    bootstrap = kafka_broker.bootstrap

    async def scenario():
        # given the group's journeys folded in the older format, its offsets committed past every event
        await fold_in_the_older_format(bootstrap, topics, store, monkeypatch)
        # when a processor of the current format rebuilds them
        async with running(processor(bootstrap, topics)) as upgraded:
            await folded_until(upgraded, replayed(store))

    asyncio.run(scenario())

    # then the latest journey of every key on the topic is readable and equals a replay's
    def latest(records) -> dict[str, bytes]:
        items, _ = decode_journeys(records)
        return {key: journey.to_bytes() for key, journey in items if journey is not None}

    records = read_topic(bootstrap, topics["journeys_topic"], until=lambda records: latest(records) == replayed(store))
    assert latest(records) == replayed(store)
    assert decode_journeys(records)[1] == 0


def test_restarted_processor__a_rebuild_cut_short_still_ends_equal_to_a_replay(kafka_broker, topics, store, monkeypatch):
    bootstrap = kafka_broker.bootstrap

    async def scenario():
        # given journeys of the older format, and a current processor stopped after its
        # rebuild had folded and committed a first small batch
        await fold_in_the_older_format(bootstrap, topics, store, monkeypatch)
        async with running(processor(bootstrap, topics, max_records=20)) as cut_short:
            deadline = asyncio.get_running_loop().time() + 30
            while not folded(cut_short) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        assert folded(cut_short) != replayed(store), "the rebuild finished before it was stopped: nothing was tested"

        # when the next processor of the group is assigned the partitions
        async with running(processor(bootstrap, topics)) as resumed:
            return await folded_until(resumed, replayed(store))

    # then its journeys equal a replay of the log
    assert asyncio.run(scenario()) == replayed(store)


FIRST_KEPT = 5  # the offset each events partition begins at once the broker deleted the records below


def test_upgraded_processor__a_rebuild_whose_first_events_kafka_deleted_reports_them_missing(
    kafka_broker, topics, store, monkeypatch, caplog
):
    bootstrap = kafka_broker.bootstrap
    caplog.set_level(logging.INFO, logger="streams.processors")

    async def scenario():
        # given journeys of the older format, and a broker that deleted each events
        # partition's first records (trimmed below the commits: staged by the consumer's
        # seek to the beginning, as the bundled broker cannot delete records)
        await fold_in_the_older_format(bootstrap, topics, store, monkeypatch)
        upgraded = processor(bootstrap, topics)
        await upgraded.start()
        consumer = upgraded._consumer

        async def seek_to_what_is_kept(*tps):
            for tp in tps:
                consumer.seek(tp, FIRST_KEPT)

        consumer.seek_to_beginning = seek_to_what_is_kept
        # when the processor of the current format is assigned the partitions and rebuilds
        runner = asyncio.create_task(upgraded.run())
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while upgraded.stats()["rebuilds_completed"] < PARTITIONS:
                assert asyncio.get_running_loop().time() < deadline, f"no rebuild finished: {upgraded.stats()}"
                await asyncio.sleep(0.1)
            return folded(upgraded), upgraded.stats()
        finally:
            await upgraded.stop()
            await runner
            await upgraded.close()

    journeys, stats = asyncio.run(scenario())

    # then it does not pretend: each partition's rebuild is reported missing the deleted events
    assert journeys != replayed(store)
    assert stats["rebuilds_missing_events"] == PARTITIONS
    assert "touchpoints relay --reset" in stats["last_error"]
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert sorted(int(message.split("partition ")[1].split()[0]) for message in errors) == list(range(PARTITIONS))
    assert all(f"from offset {FIRST_KEPT}" in message for message in errors)
