"""How the processor gets through a broker that lost its data (the memory-only bundled
broker restarted): ``tests/streams/test_faults.py`` runs the whole platform through it;
these pin the two behaviours it needed, one at a time.

The consumers here are small stand-ins for aiokafka's: the states they model (a high
watermark above records the broker can no longer serve, an assignment naming partitions
a recreated topic no longer has) arise only from a broker restart racing the clients,
which cannot be staged on demand against a real broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.structs import TopicPartition

from streams.processors import JourneyProcessor, read_to_end

JOURNEYS = "touchpoints.journeys"


class ReaderWithAHole:
    """Serves records up to ``served`` of a partition whose watermark says ``high``."""

    def __init__(self, served: dict[TopicPartition, int], high: dict[TopicPartition, int]):
        self.served, self.high = served, high
        self.positions = dict.fromkeys(served, 0)
        self.fetches = 0

    async def getmany(self, *tps, timeout_ms):
        await asyncio.sleep(0)  # a real fetch yields to the loop (and lets a timeout fire)
        self.fetches += 1
        fetched = {}
        for tp in tps:
            if self.positions[tp] < self.served[tp]:
                fetched[tp] = [SimpleNamespace(offset=o) for o in range(self.positions[tp], self.served[tp])]
                self.positions[tp] = self.served[tp]
        return fetched

    def highwater(self, tp):
        return self.high[tp]

    async def position(self, tp):
        return self.positions[tp]


def test_read_to_end__a_partition_stuck_below_its_watermark_counts_as_ended_there():
    # given two partitions: one whole, one whose last 24 records the broker no longer has
    whole, holed = TopicPartition(JOURNEYS, 0), TopicPartition(JOURNEYS, 1)
    reader = ReaderWithAHole(served={whole: 5, holed: 173}, high={whole: 5, holed: 197})

    # when reading both to the end
    records = asyncio.run(asyncio.wait_for(read_to_end(reader, [whole, holed], stalled_polls=4), timeout=10))

    # then it returns what there is instead of waiting for ever
    assert [len(records[whole]), len(records[holed])] == [5, 173]
    assert reader.fetches == 1 + 4


class Consumer:
    """The part of aiokafka's consumer the assignment check uses."""

    def __init__(self, assigned: list[int]):
        self.assigned = {TopicPartition("touchpoints.events", p) for p in assigned}
        self.calls: list[str] = []

    def assignment(self):
        return self.assigned

    def unsubscribe(self):
        self.calls.append("unsubscribe")

    def subscribe(self, topics, listener):
        self.calls.append(f"subscribe {topics}")


def test_stale_assignment__partitions_the_topic_no_longer_has_make_the_member_rejoin():
    # given a member assigned partitions 0-3 of an events topic recreated with 0-2
    processor = JourneyProcessor("127.0.0.1:1", events_topic="touchpoints.events")
    processor._consumer = Consumer([0, 1, 2, 3])

    # when it compares its assignment with the topic
    rejoined = processor.rejoin_if_assignment_is_stale({0, 1, 2})

    # then it leaves and subscribes again, and says so in its stats
    assert rejoined
    assert processor._consumer.calls == ["unsubscribe", "subscribe ['touchpoints.events']"]
    assert processor._counts["rejoins"] == 1


def test_stale_assignment__a_current_or_unknown_layout_changes_nothing():
    processor = JourneyProcessor("127.0.0.1:1", events_topic="touchpoints.events")
    processor._consumer = Consumer([0, 2])

    checks = [processor.rejoin_if_assignment_is_stale(existing) for existing in ({0, 1, 2}, None, set())]

    assert checks == [False, False, False] and processor._consumer.calls == []
