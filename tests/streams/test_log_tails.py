"""``PartitionTails``: the last event of each events partition up to a head, read from the
store (SQLite, real) as the relay's partitioner places each event."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from application.demo import generate
from application.ingest import Ingestor
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from streams import log_tails
from streams.log_tails import PartitionTails
from streams.topics import partition_for_key

PARTITIONS = 6


@pytest.fixture
def store(tmp_path) -> Iterator[SQLiteEventStore]:
    with SQLiteEventStore(tmp_path / "events.db") as opened:
        yield opened


def append(store: SQLiteEventStore, customers: int, seed: int) -> None:
    Ingestor(store).append([REGISTRY.validate(item) for item in generate(customers, seed=seed)])


def tails_by_reading_everything(store: SQLiteEventStore, head: int) -> dict[int, int]:
    last: dict[int, int] = {}
    for event in store.read_all():
        if event.position <= head:
            last[partition_for_key(event.stream, PARTITIONS)] = event.position
    return last


def test_tails__each_partitions_last_event_up_to_the_head(store, monkeypatch):
    # given a log of a few hundred events, read back in windows of 16 positions
    monkeypatch.setattr(log_tails, "FIRST_WINDOW", 16)
    append(store, 40, seed=1)
    head = store.head_position()

    # when the tails are asked for at the head, and at a position below it
    at_head = PartitionTails(store).through(head, PARTITIONS)
    below = PartitionTails(store).through(head // 3, PARTITIONS)

    # then each is the last event the partitioner put on each partition up to there
    assert at_head == tails_by_reading_everything(store, head) and len(at_head) == PARTITIONS
    assert below == tails_by_reading_everything(store, head // 3)


def test_tails__later_appends_are_read_on_from_where_the_last_call_ended(store, monkeypatch):
    # given tails read at a head
    append(store, 20, seed=2)
    tails = PartitionTails(store)
    tails.through(store.head_position(), PARTITIONS)
    read = []
    read_all = store.read_all

    def counted_read_all(start: int = 0, **options):
        read.append(start)
        return read_all(start, **options)

    monkeypatch.setattr(store, "read_all", counted_read_all)

    # when events are appended and the tails asked for at the new head
    before = store.head_position()
    append(store, 5, seed=3)
    head = store.head_position()
    after = tails.through(head, PARTITIONS)

    # then only what was appended was read, and the tails are the new ones
    assert read == [before + 1]
    assert after == tails_by_reading_everything(store, head)


def test_tails__a_head_below_one_asked_before_gets_the_later_tails(store):
    # given tails read at the head (health checks run concurrently: an earlier read of the head may come later)
    append(store, 20, seed=4)
    head = store.head_position()
    tails = PartitionTails(store)
    tails.through(head, PARTITIONS)

    # when asked for at a lower head, then the later tails come back: a check waits for more, never for less
    assert tails.through(head - 50, PARTITIONS) == tails_by_reading_everything(store, head)


def test_tails__an_empty_log_and_a_partition_without_events(store):
    # given an empty log, then one customer's events (one stream: one partition)
    assert PartitionTails(store).through(None, PARTITIONS) == {}
    append(store, 1, seed=5)
    head = store.head_position()

    tails = PartitionTails(store).through(head, PARTITIONS)

    # then only the partitions holding events are named
    assert tails == tails_by_reading_everything(store, head) and 0 < len(tails) < PARTITIONS
