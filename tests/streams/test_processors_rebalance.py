"""The journey processor through group rebalances: a member continues a partition's
journeys only from a restore made after the assignment that gave it the partition, so
journeys another member folded meanwhile are never overwritten by older ones.

Real broker, two processors of one group, topics of the test's own. The one staged
step: between the revocation of a member's partitions and its next assignment, its run
loop can come back from an empty fetch (a fetch in flight when the rebalance began) and
look for partitions to restore; that moment is made certain by restoring right after
the revocation."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest

from events.sqlite.store import SQLiteEventStore
from streams.processors import JourneyProcessor
from streams.topics import event_record, partition_for_key
from tests.streams.processor_runs import (
    PARTITIONS, demo_store, processor, publish, replayed, running, topic_names, wait_committed
)
from tests.streams.test_processors import journeys_in_topic

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path) -> Iterator[SQLiteEventStore]:
    store = demo_store(tmp_path / "events.db", seed=6161)
    yield store
    store.close()


@pytest.fixture
def topics(kafka_broker, unique_name) -> dict[str, str]:
    return topic_names(unique_name)


def ends(recorded_events: list) -> dict[int, int]:
    """Per partition, the offset after the last of ``recorded_events`` once published."""
    return dict(Counter(partition_for_key(event_record(recorded)[0], PARTITIONS) for recorded in recorded_events))


def restoring_between_revocation_and_assignment(member: JourneyProcessor) -> JourneyProcessor:
    """``member``, whose run loop looks for idle partitions to restore as soon as its
    partitions are revoked, before the group gives out the next assignment."""
    revoke = member.on_revoked

    async def revoke_then_restore_idle(partitions):
        await revoke(partitions)
        await member.restore_idle()

    member.on_revoked = revoke_then_restore_idle
    return member


async def wait_assigned(members: list[JourneyProcessor], timeout: float = 60) -> None:
    """Until every member holds partitions and between them, each partition once."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not all(member.stats()["assigned"] for member in members) or \
            sorted(p for member in members for p in member.stats()["assigned"]) != list(range(PARTITIONS)):
        assert asyncio.get_running_loop().time() < deadline, [member.stats()["assigned"] for member in members]
        await asyncio.sleep(0.1)


def test_partition_back_from_another_member__is_restored_with_what_that_member_folded(kafka_broker, topics, store):
    bootstrap = kafka_broker.bootstrap
    events = list(store.read_all())
    third = len(events) // 3
    first, second, last = events[:third], events[third : 2 * third], events[2 * third :]

    async def scenario() -> dict[str, bytes]:
        # given member A, alone in the group, folded the first third of the log
        async with running(restoring_between_revocation_and_assignment(processor(bootstrap, topics))) as a:
            publish(bootstrap, topics["events_topic"], first)
            await wait_committed(bootstrap, topics["events_topic"], topics["group_id"], ends(first))
            # and member B joined, took some of A's partitions and folded the second third
            async with running(processor(bootstrap, topics)) as b:
                await wait_assigned([a, b])
                publish(bootstrap, topics["events_topic"], second)
                await wait_committed(bootstrap, topics["events_topic"], topics["group_id"], ends(first + second))
            # when B leaves, A gets every partition back and folds the last third
            await wait_assigned([a])
            publish(bootstrap, topics["events_topic"], last)
            await wait_committed(bootstrap, topics["events_topic"], topics["group_id"], ends(events))
        return await journeys_in_topic(bootstrap, topics["journeys_topic"])

    published = asyncio.run(scenario())

    # then the last journey of every identity on the journeys topic is what a replay gives
    expected = replayed(store)
    assert sorted(key for key in expected if published.get(key) != expected[key]) == []
