"""How the processor gets through a broker that lost its data (the memory-only bundled
broker restarted) or failed a request: ``tests/streams/test_faults.py`` runs the whole
platform through a restart; these pin the behaviours it needed, one at a time.

The consumers and producer here are small stand-ins for aiokafka's: the states they
model (a high watermark above records the broker can no longer serve, an assignment
naming partitions a recreated topic no longer has, a produce that fails) arise only from
a broker restart or failure racing the clients, which cannot be staged on demand against
a real broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import TopicPartition

from application.demo import generate
from events.encoded import encode_events
from events.registry import REGISTRY
from events.store import RecordedEvent
from streams.processors import JourneyProcessor
from streams.reading import read_to_end
from streams.topics import event_record

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


class FetchingConsumer:
    """The part of aiokafka's consumer ``process`` uses: one assigned partition, seeks
    and commits recorded."""

    def __init__(self, tp: TopicPartition):
        self.tp = tp
        self.seeks: list[int] = []
        self.commits: list[int] = []

    def assignment(self):
        return {self.tp}

    def highwater(self, tp):
        return None

    def seek(self, tp, offset):
        self.seeks.append(offset)

    async def commit(self, offsets):
        self.commits.append(offsets[self.tp].offset)


class Producer:
    """aiokafka's batch API, acknowledging (or, while ``failing``, refusing) each batch."""

    def __init__(self, failing: bool):
        self.failing = failing
        self.written: list[bytes] = []

    def create_batch(self):
        return Batch()

    async def send_batch(self, batch, topic, *, partition):
        if self.failing:
            raise KafkaTimeoutError()
        future = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=len(self.written)))
        self.written += batch.keys
        return future


class Batch:
    """aiokafka's ``BatchBuilder``, keeping only the keys it was given."""

    def __init__(self):
        self.keys: list[bytes] = []

    def append(self, *, key, value, timestamp, headers):
        self.keys.append(key)
        return object()

    def record_count(self):
        return len(self.keys)


def fetched_records(first_offset: int) -> tuple[list[SimpleNamespace], set[str]]:
    """A few customers' events as fetched ``touchpoints.events`` records, and their streams."""
    events = encode_events([REGISTRY.validate(item) for item in generate(3, seed=11)]).new_events()
    records = []
    for n, (stream, new) in enumerate(events):
        recorded = RecordedEvent(n + 1, stream, 0, new.event_id, new.type, new.schema_version, new.occurred_at,
                                 new.occurred_at, new.data, new.metadata)
        _, value, headers = event_record(recorded)
        records.append(SimpleNamespace(offset=first_offset + n, value=value, headers=headers))
    return records, {stream for stream, _ in events}


def test_failed_publish__the_batch_is_read_again_and_its_journeys_published_then():
    # given a processor holding partition 0 whose first produce fails
    tp = TopicPartition("touchpoints.events", 0)
    records, streams = fetched_records(first_offset=10)
    processor = JourneyProcessor("127.0.0.1:1")
    processor._consumer, processor._producer = FetchingConsumer(tp), Producer(failing=True)
    processor.state.restore(0, [])

    async def scenario():
        # when the batch fails to publish, then comes again (the rewind) and publishes
        with pytest.raises(KafkaTimeoutError):
            await processor.process({tp: records})
        processor._producer.failing = False
        await processor.process({tp: records})
        await processor._committing

    asyncio.run(scenario())

    # then the consumer went back to the batch's first record, committed nothing for the
    # failed try, and the retry published every journey of the batch
    assert processor._consumer.seeks == [10]
    assert processor._consumer.commits == [10 + len(records)]
    assert set(processor._producer.written) == {stream.encode() for stream in streams}
    assert processor.stats()["duplicates"] == len(records)
