"""The worker's journeys, saved at a clean stop and handed over when the broker lost the
events (``streams.worker_state``): real broker, real SQLite store, real processors.

The whole cycle through the platform (stop, broker restart, start) is in
tests/consumers/test_platform_restart.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from events.sqlite.store import SQLiteEventStore
from streams import worker_state
from streams.checkpoint import Checkpoint, SqliteCheckpointStore
from streams.processors import JourneyProcessor
from streams.topics import TopicSpec, close_admin, describe_topics, ensure_topics
from tests.streams.processor_runs import PARTITIONS, demo_store, publish
from tests.streams.test_processors import journeys_in_topic, replayed_journeys, run_until_folded

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path) -> Iterator[SQLiteEventStore]:
    store = demo_store(tmp_path / "events.db", seed=5151)
    yield store
    store.close()


def publish_after(bootstrap: str, topic: str, store, after: int, *, through: int | None = None) -> int:
    """Publish the log's events after position ``after`` (up to ``through``) as the relay does; how many."""
    return publish(bootstrap, topic, (recorded for recorded in store.read_all(after + 1)
                                      if through is None or recorded.position <= through))


def topic_id(bootstrap: str, topic: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return describe_topics(admin, [topic])[topic][0]
    finally:
        close_admin(admin, "test")


def processor(bootstrap: str, name: str, data: Path) -> JourneyProcessor:
    return JourneyProcessor(bootstrap, events_topic=f"{name}.events", journeys_topic=f"{name}.journeys",
                            group_id=f"{name}-group", partitions=PARTITIONS, journeys_folder=data / "worker",
                            state_folder=worker_state.state_folder(data))


def make_topics(bootstrap: str, name: str) -> None:
    ensure_topics(bootstrap, PARTITIONS, specs=[
        TopicSpec(f"{name}.events", PARTITIONS), TopicSpec(f"{name}.journeys", PARTITIONS, {"cleanup.policy": "compact"})])


def saved_journeys(folder: Path) -> dict[str, bytes]:
    """Every journey of the state saved in ``folder``, as a replay gives them."""
    saved = worker_state.read(folder)
    assert saved is not None, f"no state saved in {folder}"
    return {key: journey.to_bytes() for batch in worker_state.saved_journey_batches(saved, size=100)
            for key, journey in batch}


def test_worker_state__a_handed_over_state_is_the_base_of_every_restore_and_nothing_is_published_again(
    kafka_broker, unique_name, store, tmp_path
):
    bootstrap = kafka_broker.bootstrap
    folder = worker_state.state_folder(tmp_path)
    events = list(store.read_all())
    half, three_quarters = events[len(events) // 2].position, events[3 * len(events) // 4].position
    second_name = f"{unique_name}-b"

    async def scenario() -> tuple:
        # given a worker that folded the first half of the log and stopped cleanly
        make_topics(bootstrap, f"{unique_name}-a")
        first = processor(bootstrap, f"{unique_name}-a", tmp_path)
        folded = publish_after(bootstrap, f"{unique_name}-a.events", store, 0, through=half)
        await run_until_folded(first, folded)
        saved = worker_state.read(folder)
        # when the broker lost everything (new, empty topics), the state is handed over and
        # the relay publishes only the events after its lowest position (here: up to three quarters)
        make_topics(bootstrap, second_name)
        handed = worker_state.handed_folder(folder)
        folder.rename(handed)
        worker_state.hand_over(handed, topic_id(bootstrap, f"{second_name}.events"), saved.after)
        published = publish_after(bootstrap, f"{second_name}.events", store, saved.after, through=three_quarters)
        second = processor(bootstrap, second_name, tmp_path)
        await run_until_folded(second, published)
        topic_after_second = await journeys_in_topic(bootstrap, f"{second_name}.journeys")
        # and, on the same topics, a next worker (a restart, a rebalance) folds the rest
        rest = publish_after(bootstrap, f"{second_name}.events", store, three_quarters)
        third = processor(bootstrap, second_name, tmp_path)
        await run_until_folded(third, rest)
        return saved, published, second.stats(), topic_after_second, rest, third.stats()

    saved, published, second, topic_after_second, rest, third = asyncio.run(scenario())

    # then the state named, per partition, the last event folded into it
    assert saved is not None and set(saved.positions) == set(range(PARTITIONS))
    assert max(saved.positions.values()) == half
    # and the second worker restored every partition on the journeys handed over, folded only the
    # events after the lowest position, and published only the journeys those events touched
    assert second["adopted_partitions"] == PARTITIONS
    assert second["base_journeys"] == len({r.stream for r in events if r.position <= half})
    assert second["events"] == published == sum(1 for r in events if saved.after < r.position <= three_quarters)
    assert set(topic_after_second) == {r.stream for r in events if saved.after < r.position <= three_quarters}
    # and the third restored on the same base with the changelog over it, and folded only the rest
    assert third["adopted_partitions"] == PARTITIONS
    assert third["events"] == rest == sum(1 for r in events if r.position > three_quarters)
    # and the journeys it saved at its stop (base and changes, flattened) are a replay of the whole log
    assert saved_journeys(folder) == replayed_journeys(store)
    # and the base stays for the life of the topic it was handed over to
    assert worker_state.handed_over(worker_state.handed_folder(folder), topic_id(bootstrap, f"{second_name}.events"))


def test_worker_state__a_state_not_handed_over_is_discarded_and_the_changelog_restores(
    kafka_broker, unique_name, store, tmp_path
):
    bootstrap = kafka_broker.bootstrap
    folder = worker_state.state_folder(tmp_path)

    async def scenario() -> dict:
        # given a worker that folded the log and stopped cleanly, saving its state
        make_topics(bootstrap, unique_name)
        total = publish_after(bootstrap, f"{unique_name}.events", store, 0)
        await run_until_folded(processor(bootstrap, unique_name, tmp_path), total)
        assert worker_state.read(folder) is not None
        # when the next one starts on a broker that kept its records (nothing handed over)
        publish_after(bootstrap, f"{unique_name}.events", store, 0)  # the relay re-sent everything
        second = processor(bootstrap, unique_name, tmp_path)
        await run_until_folded(second, total)
        return second.stats()

    stats = asyncio.run(scenario())

    # then it restored from its changelog alone, every event a duplicate
    assert stats["adopted_partitions"] == 0
    assert stats["restores"] == PARTITIONS
    assert stats["applied"] == 0


# --- the platform's hand-over ------------------------------------------------------------------


def saved_state(tmp_path: Path, store, *, event_id: str | None = None) -> int:
    """A saved state (empty journeys) whose partitions all folded up to the log's head."""
    from application.journey_spill import SpilledJourneys

    last = list(store.read_all())[-1]
    journeys = {p: SpilledJourneys(tmp_path / "worker", keeps_identity=False) for p in range(PARTITIONS)}
    worker_state.save(worker_state.state_folder(tmp_path), journeys,
                      {p: (last.position, event_id or str(last.event_id)) for p in journeys}, events_topic_id="old")
    return last.position


def relay_checkpoint(tmp_path: Path, topic: str, checkpoint: Checkpoint | None = None) -> Checkpoint:
    with SqliteCheckpointStore(tmp_path / "relay.db") as checkpoints:
        if checkpoint is not None:
            checkpoints.save(topic, checkpoint)
        return checkpoints.load(topic)


def hand_over(kafka_broker, unique_name: str, store, tmp_path: Path, **kwargs) -> worker_state.SavedJourneys | None:
    """The platform's hand-over, to this test's own topics."""
    return worker_state.hand_over_to_fresh_broker(tmp_path, store, kafka_broker.bootstrap,
                                                  topic=f"{unique_name}.events",
                                                  journeys_topic=f"{unique_name}.journeys", **kwargs)


def test_hand_over__a_lost_events_topic_gets_the_state_and_the_relay_resumes_after_it(
    kafka_broker, unique_name, store, tmp_path
):
    # given a saved state, and a relay that had published the log into a topic now lost
    head = saved_state(tmp_path, store)
    topic = f"{unique_name}.events"
    relay_checkpoint(tmp_path, topic, Checkpoint(position=head, offsets={0: 9}, topic_id="the-lost-topic"))
    make_topics(kafka_broker.bootstrap, unique_name)  # created anew, empty

    # when the platform starts
    handed_state = hand_over(kafka_broker, unique_name, store, tmp_path)

    # then the relay goes on after the state's position, into the new topic, and the worker is told
    new_id = topic_id(kafka_broker.bootstrap, topic)
    assert handed_state is not None and handed_state.after == head
    checkpoint = relay_checkpoint(tmp_path, topic)
    assert (checkpoint.position, checkpoint.topic_id, checkpoint.offsets) == (head, new_id, {})
    handed = worker_state.handed_folder(worker_state.state_folder(tmp_path))
    assert handed_state.folder == handed and not worker_state.state_folder(tmp_path).exists()
    assert worker_state.handed_over(handed, new_id) is not None
    assert worker_state.handed_over(handed, "another-topic") is None


def lost_topic_and_a_saved_state(kafka_broker, unique_name, store, tmp_path) -> str:
    head = saved_state(tmp_path, store)
    topic = f"{unique_name}.events"
    relay_checkpoint(tmp_path, topic, Checkpoint(position=head, offsets={0: 9}, topic_id="the-lost-topic"))
    make_topics(kafka_broker.bootstrap, unique_name)
    return topic


def test_hand_over__refused_when_the_views_state_does_not_hold_the_saved_journeys(
    kafka_broker, unique_name, store, tmp_path, caplog
):
    # given a saved state and a lost events topic, but views that did not save (or read) every journey
    topic = lost_topic_and_a_saved_state(kafka_broker, unique_name, store, tmp_path)

    # when the platform starts
    handed_state = hand_over(kafka_broker, unique_name, store, tmp_path, views_hold=lambda state: False)

    # then nothing is handed over (the journeys topic would lack what the views lack): the relay republishes all
    assert handed_state is None
    assert relay_checkpoint(tmp_path, topic).topic_id == "the-lost-topic"
    assert worker_state.read(worker_state.state_folder(tmp_path)) is None
    assert "the views' saved state does not hold every saved journey" in caplog.text


def test_hand_over__refused_when_the_journeys_topic_kept_records(kafka_broker, unique_name, store, tmp_path, caplog):
    # given a saved state and a lost events topic, but a journeys topic with records in it
    topic = lost_topic_and_a_saved_state(kafka_broker, unique_name, store, tmp_path)
    publish(kafka_broker.bootstrap, f"{unique_name}.journeys", list(store.read_all())[:1])

    # when the platform starts
    handed_state = hand_over(kafka_broker, unique_name, store, tmp_path)

    # then nothing is handed over: those records would be taken as changes over the saved journeys
    assert handed_state is None
    assert "holds records" in caplog.text


def test_hand_over__replaces_the_base_of_an_earlier_hand_over(kafka_broker, unique_name, store, tmp_path):
    # given the base of an earlier hand-over, and a newer saved state
    handed = worker_state.handed_folder(worker_state.state_folder(tmp_path))
    saved_state(tmp_path, store, event_id="an-older-state")
    worker_state.state_folder(tmp_path).rename(handed)
    worker_state.hand_over(handed, "an-older-topic", 1)
    topic = lost_topic_and_a_saved_state(kafka_broker, unique_name, store, tmp_path)

    # when the platform hands the newer one over
    handed_state = hand_over(kafka_broker, unique_name, store, tmp_path)

    # then it is the base now, and the older one is gone
    assert handed_state is not None
    assert worker_state.handed_over(handed, "an-older-topic") is None
    assert worker_state.read(handed).event_ids == handed_state.event_ids != dict.fromkeys(range(PARTITIONS), "an-older-state")


def test_hand_over__a_broker_that_kept_the_topic_gets_nothing_and_the_state_is_discarded(
    kafka_broker, unique_name, store, tmp_path
):
    # given a saved state, and the relay's topic still there
    head = saved_state(tmp_path, store)
    topic = f"{unique_name}.events"
    make_topics(kafka_broker.bootstrap, unique_name)
    kept = Checkpoint(position=head, offsets={}, topic_id=topic_id(kafka_broker.bootstrap, topic))
    relay_checkpoint(tmp_path, topic, kept)

    # when the platform starts
    handed_state = hand_over(kafka_broker, unique_name, store, tmp_path)

    # then nothing is handed over, the relay's checkpoint is as it was, the state is gone
    assert handed_state is None
    assert relay_checkpoint(tmp_path, topic).position == head
    assert worker_state.read(worker_state.state_folder(tmp_path)) is None


def test_hand_over__a_log_that_no_longer_holds_the_states_last_event_gets_nothing(
    kafka_broker, unique_name, store, tmp_path, caplog
):
    # given a saved state whose last event is not the one the log holds at that position
    head = saved_state(tmp_path, store, event_id="00000000-0000-4000-8000-000000000000")
    topic = f"{unique_name}.events"
    relay_checkpoint(tmp_path, topic, Checkpoint(position=head, offsets={0: 9}, topic_id="the-lost-topic"))
    make_topics(kafka_broker.bootstrap, unique_name)

    # when the platform starts
    handed_state = hand_over(kafka_broker, unique_name, store, tmp_path)

    # then nothing is handed over: the relay republishes the whole log, as without a state
    assert handed_state is None
    assert relay_checkpoint(tmp_path, topic).topic_id == "the-lost-topic"
    assert worker_state.read(worker_state.state_folder(tmp_path)) is None
    assert "the log no longer holds event" in caplog.text


# --- whether the views hold the saved journeys ---------------------------------------------------


def handed(journeys_topic_id: str | None = "journeys-1", ends: dict[int, int] | None = None):
    return worker_state.SavedJourneys(Path("unused"), "events-1", {0: 5, 1: 9}, {0: "a", 1: "b"},
                                      journeys_topic_id, {0: 10, 1: 20} if ends is None else ends)


def kafka_feed(topic_id: str = "journeys-1", positions: dict[str, int] | None = None) -> dict:
    return {"kind": "kafka", "topic": "touchpoints.journeys", "topic_id": topic_id,
            "positions": {"0": 10, "1": 21} if positions is None else positions}


@pytest.mark.parametrize("feed, saved, expected", [
    (kafka_feed(), handed(), True),
    (kafka_feed(positions={"0": 10, "1": 19}), handed(), False),  # a journey the views did not read
    (kafka_feed(positions={"0": 10}), handed(), False),  # a partition never read
    (kafka_feed(topic_id="journeys-0"), handed(), False),  # another topic's offsets
    (kafka_feed(), handed(journeys_topic_id=None), False),  # the worker could not say
    (kafka_feed(), handed(ends={}), False),
    ({"kind": "store"}, handed(), False),  # views fed from the store
    (None, handed(), False),
], ids=["read to the ends", "behind on one", "a partition unread", "another topic", "no topic id", "no ends",
        "store feed", "no feed"])
def test_views_hold_every_saved_journey__only_when_their_feed_read_the_same_topic_past_its_ends(feed, saved,
                                                                                                expected):
    assert worker_state.views_hold_every_saved_journey(feed, saved) is expected


# --- the state's files -------------------------------------------------------------------------


def test_saved_state__missing_a_partitions_file_is_not_used(tmp_path, store):
    # given a saved state one of whose files is gone
    saved_state(tmp_path, store)
    folder = worker_state.state_folder(tmp_path)
    worker_state.partition_file(folder, 1).unlink()

    # then it is not used
    assert worker_state.read(folder) is None


def test_saved_state__of_another_journey_format_is_not_used(tmp_path, store, monkeypatch):
    # given a saved state, and code whose journey format changed since
    saved_state(tmp_path, store)
    monkeypatch.setattr("projections.journey.VERSION", "changed")

    # then it is not used
    assert worker_state.read(worker_state.state_folder(tmp_path)) is None
