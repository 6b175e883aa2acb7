"""The journey processor: its fold over touchpoints.events records (no broker), and the
Kafka shell (real broker, topics of its own): publish, restore after a restart, and
the view feed that follows the journeys."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaProducer

from application.demo import generate
from application.ingest import Ingestor
from application.live_views import LiveViews
from application.replay import replay
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from projections.journey import IdentityJourney
from consumers.api.app import journeys_views_health
from streams.journey_state import JourneyState
from streams.log_tails import PartitionTails
from streams.processors import JourneyProcessor
from streams.reading import read_to_end
from streams.topics import event_record, partition_for_key
from streams.view_feed import ViewFeed
from tests.streams.conftest import wait_until

PARTITIONS = 3


@pytest.fixture
def store(tmp_path) -> Iterator[SQLiteEventStore]:
    store = SQLiteEventStore(tmp_path / "events.db")
    Ingestor(store).append([REGISTRY.validate(item) for item in generate(80, seed=5150)])
    yield store
    store.close()


def records_by_partition(store) -> dict[int, list[tuple[bytes, list]]]:
    by_partition: dict[int, list[tuple[bytes, list]]] = {p: [] for p in range(PARTITIONS)}
    for recorded in store.read_all():
        key, value, headers = event_record(recorded)
        by_partition[partition_for_key(key, PARTITIONS)].append((value, headers))
    return by_partition


def replayed_journeys(store) -> dict[str, bytes]:
    population = replay(store).population
    return {key: journey.to_bytes() for key, journey in population.journeys.items()}


@pytest.fixture(params=["in memory", "on disk"])
def new_state(request, tmp_path, monkeypatch):
    """Makes a ``JourneyState`` each way the worker can keep it; on disk with only 3 journeys
    held decoded, so folds and restores go through the file."""
    if request.param == "in memory":
        return JourneyState
    monkeypatch.setattr("application.journey_spill.HELD", 3)
    monkeypatch.setattr("application.journey_spill.WRITE_BATCH", 2)
    return lambda: JourneyState(journeys_folder=tmp_path / "worker")


def state_journeys(state: JourneyState) -> dict[str, bytes]:
    return {key: j.to_bytes() for journeys in state.partitions.values() for key, j in journeys.items()}


# --- the fold -------------------------------------------------------------------------------


def test_fold__gives_each_identity_the_journey_a_replay_of_the_log_gives(store, new_state):
    state = new_state()

    for partition, records in records_by_partition(store).items():
        state.fold(partition, records)

    assert state_journeys(state) == replayed_journeys(store)


def test_fold__redelivered_records_change_nothing_but_are_reported_touched(store, new_state):
    state = new_state()
    batches = records_by_partition(store)
    for partition, records in batches.items():
        state.fold(partition, records)
    before = state_journeys(state)

    again = state.fold(0, batches[0])

    assert state_journeys(state) == before
    assert again.applied == 0 and again.duplicates == len(batches[0])
    assert set(again.touched) == {key for key in before if partition_for_key(key, PARTITIONS) == 0}


def test_fold__a_record_without_headers_is_skipped_with_a_reason(store, new_state):
    state = new_state()
    value, headers = records_by_partition(store)[1][0]

    result = state.fold(1, [(value, []), (value, headers)])

    assert result.applied == 1
    assert len(result.undecodable) == 1 and "missing" in result.undecodable[0]


def test_restore__the_last_journey_of_a_key_wins_and_a_tombstone_removes_it(new_state):
    older, newer, gone = IdentityJourney("customer-a"), IdentityJourney("customer-a"), IdentityJourney("customer-b")
    newer.index[7] = None  # one more (non-touch) event applied
    state = new_state()

    count = state.restore(2, [(b"customer-a", older.to_bytes()), (b"customer-b", gone.to_bytes()),
                              (b"customer-a", newer.to_bytes()), (b"customer-b", None)])

    assert count == 1
    assert state.journeys(2) == {"customer-a": newer}


def test_restore__an_unreadable_journey_is_left_out_to_be_rebuilt_from_the_events(new_state):
    state = new_state()

    state.restore(0, [(b"customer-x", b"{\"version\": 999}"), (b"customer-y", IdentityJourney("customer-y").to_bytes())])

    assert set(state.journeys(0)) == {"customer-y"}


def test_restore__journeys_a_later_record_replaces_are_not_counted_unreadable(new_state):
    state = new_state()

    state.restore(1, [(b"customer-x", b"{\"version\": 1}"), (b"customer-x", IdentityJourney("customer-x").to_bytes()),
                      (b"customer-z", b"{\"version\": 1}")])

    assert set(state.journeys(1)) == {"customer-x"}
    assert state.unreadable == {1: 1}


def test_restore__on_a_base_file_the_changelog_replaces_its_journeys_and_the_file_stays_as_it_was(
    new_state, tmp_path
):
    from application.journey_spill import SpilledJourneys

    # given a base file of two journeys (as a worker saved them) and a changelog of the changes since
    kept, changed, newer, added = (IdentityJourney("customer-k"), IdentityJourney("customer-c"),
                                   IdentityJourney("customer-c"), IdentityJourney("customer-n"))
    newer.index[7] = None  # one more (non-touch) event applied
    saved = SpilledJourneys(tmp_path / "saving", keeps_identity=False)
    saved.update({"customer-k": kept, "customer-c": changed})
    base = tmp_path / "partition-3.sqlite"
    saved.save_copy(base)
    saved.close()
    before = base.read_bytes()

    # when a partition is restored on it, twice (a restart restores on the same base)
    for _ in range(2):
        state = new_state()
        count = state.restore(3, [(b"customer-c", newer.to_bytes()), (b"customer-n", added.to_bytes())], base=base)

        # then it holds the base's journeys with the changelog's over them
        assert count == 3
        assert dict(state.journeys(3)) == {"customer-k": kept, "customer-c": newer, "customer-n": added}
        state.close()
    # and the base is as it was
    assert base.read_bytes() == before


def test_fold__resumes_on_restored_journeys_as_if_it_had_never_stopped(store, new_state):
    halves = {p: (records[:len(records) // 2], records[len(records) // 2:])
              for p, records in records_by_partition(store).items()}
    first = new_state()
    published = {p: [(k.encode(), j.to_bytes()) for k, j in first.fold(p, early).touched.items()]
                 for p, (early, _) in halves.items()}

    second = new_state()
    for partition, records in published.items():
        second.restore(partition, records)
        second.fold(partition, halves[partition][1])

    assert state_journeys(second) == replayed_journeys(store)


def test_fold__on_disk_holds_only_the_most_recently_used_journeys_decoded(store, tmp_path, monkeypatch):
    monkeypatch.setattr("application.journey_spill.HELD", 3)
    monkeypatch.setattr("application.journey_spill.WRITE_BATCH", 2)
    state = JourneyState(journeys_folder=tmp_path / "worker")

    for partition, records in records_by_partition(store).items():
        state.fold(partition, records)

    assert sum(len(journeys) for journeys in state.partitions.values()) > 3 * 5 * PARTITIONS
    assert all(len(journeys._held) <= 3 + 2 for journeys in state.partitions.values())
    assert state_journeys(state) == replayed_journeys(store)


# --- the Kafka shell (real broker) ---------------------------------------------------------------


def publish_events(bootstrap: str, topic: str, store, positions: set[int] | None = None) -> int:
    """Publish the log (only the events at ``positions``, if given) as the relay would."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    count = 0
    for recorded in store.read_all():
        if positions is not None and recorded.position not in positions:
            continue
        key, value, headers = event_record(recorded)
        producer.send(topic, value, key=key, headers=headers, partition=partition_for_key(key, PARTITIONS))
        count += 1
    producer.flush()
    producer.close()
    return count


async def run_until_folded(processor: JourneyProcessor, events: int, timeout: float = 60) -> None:
    await processor.start()
    runner = asyncio.create_task(processor.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while processor.stats()["events"] < events:
            assert asyncio.get_running_loop().time() < deadline, f"processor stats: {processor.stats()}"
            await asyncio.sleep(0.05)
    finally:
        await processor.stop()
        await runner
        await processor.close()


def processors_of(bootstrap: str, unique_name: str, **options: Any) -> Callable[[], JourneyProcessor]:
    """Makes processors of one consumer group on ``unique_name``'s events and journeys topics."""
    def new() -> JourneyProcessor:
        return JourneyProcessor(bootstrap, events_topic=f"{unique_name}.events",
                                journeys_topic=f"{unique_name}.journeys", group_id=f"{unique_name}-group",
                                partitions=PARTITIONS, **options)

    return new


async def create_topics(processor: JourneyProcessor) -> None:
    """Start and close ``processor``: its topics exist then, before any event is published."""
    await processor.start()
    await processor.close()


async def fold_the_log(processor: JourneyProcessor, bootstrap: str, store, positions: set[int] | None = None) -> int:
    """Create ``processor``'s topics, publish the log (``positions`` only, if given) as the
    relay would, and run it until it folded every event published; how many."""
    await create_topics(processor)
    total = publish_events(bootstrap, processor.events_topic, store, positions)
    await run_until_folded(processor, total)
    return total


async def journey_records(bootstrap: str, topic: str) -> dict[int, list]:
    """Every record of ``topic``, by partition, in order."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        return {tp.partition: records for tp, records in (await read_to_end(reader, tps)).items()}
    finally:
        await reader.stop()


async def journeys_in_topic(bootstrap: str, topic: str) -> dict[str, bytes]:
    """The latest journey of each key on ``topic``."""
    latest = {}
    for records in (await journey_records(bootstrap, topic)).values():
        for record in records:
            latest[record.key.decode()] = IdentityJourney.from_bytes(record.value).to_bytes()
    return latest


@pytest.mark.slow
@pytest.mark.parametrize("journeys_on_disk", [False, True], ids=["journeys in memory", "journeys on disk"])
def test_processor__publishes_every_identitys_journey_and_a_restarted_one_restores_without_double_counting(
    kafka_broker, unique_name, store, tmp_path, journeys_on_disk
):
    events_topic, journeys_topic = f"{unique_name}.events", f"{unique_name}.journeys"

    processor = processors_of(kafka_broker.bootstrap, unique_name,
                              journeys_folder=tmp_path / "worker" if journeys_on_disk else None)

    async def scenario() -> tuple[dict, dict, dict]:
        first = processor()
        total = await fold_the_log(first, kafka_broker.bootstrap, store)
        published_first = await journeys_in_topic(kafka_broker.bootstrap, journeys_topic)
        publish_events(kafka_broker.bootstrap, events_topic, store)  # the relay re-sent everything
        second = processor()
        await run_until_folded(second, total)
        return published_first, await journeys_in_topic(kafka_broker.bootstrap, journeys_topic), second.stats()

    first, after_restart, stats = asyncio.run(scenario())

    expected = replayed_journeys(store)
    assert first == expected
    assert after_restart == expected
    assert stats["restores"] == PARTITIONS and stats["applied"] == 0 and stats["duplicates"] == stats["events"]


@pytest.mark.slow
def test_processor__says_no_lag_only_once_a_batchs_journeys_are_on_the_topic(kafka_broker, unique_name, store):
    # given a processor with a backlog of events, watched as it publishes each batch's journeys
    events_topic, journeys_topic = f"{unique_name}.events", f"{unique_name}.journeys"
    processor = JourneyProcessor(kafka_broker.bootstrap, events_topic=events_topic, journeys_topic=journeys_topic,
                                 group_id=f"{unique_name}-group", partitions=PARTITIONS)
    lag_while_publishing = []
    publish = processor._publish

    async def watched(pending):
        lag_while_publishing.append(processor.lag())
        await publish(pending)

    processor._publish = watched

    async def scenario() -> None:
        await create_topics(processor)
        await run_until_folded(processor, publish_events(kafka_broker.bootstrap, events_topic, store))

    # when it folds the whole backlog
    asyncio.run(scenario())

    # then no lag of 0 was reported while a batch's journeys were still being sent (a health
    # check would have called the views caught up before their journeys were there), and 0 after
    assert lag_while_publishing and 0 not in lag_while_publishing
    assert processor.lag() == 0


async def last_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The offset of the last record on each partition of ``topic`` that holds any."""
    return {p: records[-1].offset for p, records in (await journey_records(bootstrap, topic)).items() if records}


@pytest.mark.slow
def test_processor__its_watermarks_name_the_last_event_folded_and_journey_published_on_each_partition(
    kafka_broker, unique_name, store
):
    # given a processor that folded the log, and another started after it on the same topics
    events_topic, journeys_topic = f"{unique_name}.events", f"{unique_name}.journeys"

    processor = processors_of(kafka_broker.bootstrap, unique_name)

    async def scenario() -> tuple[dict, dict, dict]:
        first = processor()
        total = await fold_the_log(first, kafka_broker.bootstrap, store)
        after_first = await last_offsets(kafka_broker.bootstrap, journeys_topic)
        second = processor()  # nothing new to fold: it restores what the first one published
        await second.start()
        runner = asyncio.create_task(second.run())
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while second.stats()["restored"] != list(range(PARTITIONS)):
                assert asyncio.get_running_loop().time() < deadline, f"processor stats: {second.stats()}"
                await asyncio.sleep(0.05)
            after_restore = second.watermarks()
        finally:
            await second.stop()
            await runner
            await second.close()
        return first.watermarks(), after_first, after_restore

    # when each has run
    first, journeys_ends, restarted = asyncio.run(scenario())

    # then each names, per events partition, the position of the last event there, and per
    # journeys partition the offset of the last journey (the restarted one, as it restored them)
    last_positions = {p: int(dict(records[-1][1])["position"])
                      for p, records in records_by_partition(store).items() if records}
    assert first == {"folded_positions": last_positions, "published_offsets": journeys_ends}
    assert restarted == first


@pytest.mark.slow
def test_view_feed__names_each_partitions_last_whole_fold_and_keeps_it_in_its_checkpoint(
    kafka_broker, unique_name, store
):
    # given the journeys a processor published for the whole log, in batches of 40 events
    journeys_topic = f"{unique_name}.journeys"
    processor = processors_of(kafka_broker.bootstrap, unique_name, max_records=40)()

    async def scenario() -> dict[int, list]:
        await fold_the_log(processor, kafka_broker.bootstrap, store)
        return await journey_records(kafka_broker.bootstrap, journeys_topic)

    published = asyncio.run(scenario())
    last_positions = {p: int(dict(records[-1][1])["position"])
                      for p, records in records_by_partition(store).items() if records}

    # when a view feed follows them
    views = LiveViews(background=False)
    with ViewFeed(kafka_broker.bootstrap, views, topic=journeys_topic, max_records=7) as feed:
        wait_until(lambda: feed.stats()["caught_up"] and feed.stats()["records"] == sum(map(len, published.values())),
                   30, "the view feed to catch up")
    resumed = ViewFeed(kafka_broker.bootstrap, LiveViews(background=False), topic=journeys_topic,
                       resume=feed.checkpoint())

    # then each batch's last journey carries the mark, only it, and the feed names each
    # partition's last event folded, as its resumed successor does
    marked = [[dict(record.headers).get("batch_end") is not None for record in records]
              for records in published.values()]
    assert all(marks[-1] for marks in marked) and sum(map(sum, marked)) < sum(map(len, marked))
    assert feed.folded_positions() == last_positions == processor.watermarks()["folded_positions"]
    assert resumed.folded_positions() == last_positions


@pytest.mark.slow
def test_views_fed_from_kafka__catching_up_until_every_partitions_last_event_is_in_their_journeys(
    kafka_broker, unique_name, store
):
    # given the log on the events topic but for the last event of a partition that does not
    # hold the head, folded into journeys that a view feed applied: the views' position (the
    # highest any journey reflects) is the head, and the feed is at the end of its topic
    head = store.head_position()
    last_on = {p: int(dict(records[-1][1])["position"]) for p, records in records_by_partition(store).items()}
    withheld = next(position for position in last_on.values() if position != head)
    processor = processors_of(kafka_broker.bootstrap, unique_name)

    def fold(positions: set[int]) -> None:
        asyncio.run(fold_the_log(processor(), kafka_broker.bootstrap, store, positions))

    fold({event.position for event in store.read_all()} - {withheld})
    views, tails = LiveViews(background=False), PartitionTails(store)
    with ViewFeed(kafka_broker.bootstrap, views, topic=f"{unique_name}.journeys") as feed:
        wait_until(lambda: feed.stats()["caught_up"] and views.position == head, 30, "the views at the head")

        # when their health is asked, and again once that event is folded and its journeys applied
        before = journeys_views_health(views, store, feed, tails)
        fold({withheld})
        wait_until(lambda: journeys_views_health(views, store, feed, tails)["status"] == "ok", 30,
                   "the views ok")

    # then they were catching up while its journeys were missing, and hold the log once ok
    assert (before["status"], before["position"], before["head"], before["folded"]) == ("catching_up", head, head, False)
    assert live_journeys(views) == replayed_journeys(store)


def publish_journeys(bootstrap: str, topic: str, journeys: dict[str, IdentityJourney]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, journey in journeys.items():
        producer.send(topic, journey.to_bytes(), key=key.encode(), partition=partition_for_key(key, PARTITIONS))
    producer.flush()
    producer.close()


def halfway_and_everything(store) -> tuple[dict[str, IdentityJourney], dict[str, IdentityJourney]]:
    """The journeys of the first half of the log, and of all of it."""
    return (replay(store, until_position=store.head_position() // 2).population.journeys,
            replay(store).population.journeys)


class JourneysTopic:
    """A journeys topic of ``PARTITIONS`` partitions that a test can recreate, as a restarted
    memory broker does."""

    def __init__(self, bootstrap: str, topic: str):
        from kafka.admin import KafkaAdminClient, NewTopic

        self.topic, self._new = topic, lambda: NewTopic(topic, PARTITIONS, 1)
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.admin.create_topics([self._new()])

    def recreate(self) -> None:
        self.admin.delete_topics([self.topic])
        wait_until(lambda: self.topic not in self.admin.list_topics(), 30, "the topic to be deleted")
        self.admin.create_topics([self._new()])
        self.admin.close()


def live_journeys(views: LiveViews) -> dict[str, bytes]:
    with views.locked():
        return {key: journey.to_bytes() for key, journey in views.population.journeys.items()}


@pytest.mark.slow
def test_view_feed__applies_every_partitions_journeys_to_the_live_views(kafka_broker, unique_name, store):
    topic = f"{unique_name}.journeys"
    population = replay(store).population
    publish_journeys(kafka_broker.bootstrap, topic, population.journeys)
    views = LiveViews(background=False)

    with ViewFeed(kafka_broker.bootstrap, views, topic=topic) as feed:
        wait_until(lambda: feed.stats()["caught_up"] and feed.stats()["applied"] == len(population.journeys),
                   30, "the view feed to catch up")

    assert live_journeys(views) == {key: journey.to_bytes() for key, journey in population.journeys.items()}
    assert feed.stats()["lag"] == 0


@pytest.mark.slow
def test_view_feed__a_recreated_topic_is_read_from_its_beginning_even_past_the_old_positions(
    kafka_broker, unique_name, store
):
    # given a feed that read the journeys of half the log, then lost its connection
    topic = f"{unique_name}.journeys"
    halfway, everything = halfway_and_everything(store)
    journeys_topic = JourneysTopic(kafka_broker.bootstrap, topic)
    publish_journeys(kafka_broker.bootstrap, topic, halfway)
    views = LiveViews(background=False)
    feed = ViewFeed(kafka_broker.bootstrap, views, topic=topic)
    with feed:
        wait_until(lambda: feed.stats()["caught_up"] and feed.stats()["applied"] == len(halfway), 30,
                   "the view feed to read the first topic")

    # when the topic comes back recreated (a restarted memory broker) and, before the feed
    # reconnects, holds more records than the feed had read: the journeys of the whole log
    journeys_topic.recreate()
    publish_journeys(kafka_broker.bootstrap, topic, everything)
    with feed:
        wait_until(lambda: feed.stats()["topic_recreations"] == 1 and feed.stats()["caught_up"]
                   and live_journeys(views).keys() == everything.keys(), 30, "the view feed to read the new topic")

    # then the views hold the journeys of the new topic, every one of them
    assert live_journeys(views) == {key: journey.to_bytes() for key, journey in everything.items()}
