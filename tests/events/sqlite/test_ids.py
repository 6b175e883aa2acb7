"""The writer's in-memory id index: shared prefixes, reopening, other writers, the snapshot."""

from __future__ import annotations

import os
import sqlite3
import uuid

import numpy as np
import pytest

import events.sqlite.ids as sqlite_ids
from events.encoded import encode_events
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from events.sqlite.batch import id_key
from events.sqlite.ids import IdIndex, index_keys, keys_of
from events.store import StreamState
from tests.events.contract import assert_chain_intact, new_event, wire_event

ANY = StreamState.ANY


def models(count: int, *, prefix: bytes | None = None, customer: str = "anna") -> list:
    """``count`` valid events; with ``prefix``, every id starts with those 8 bytes."""
    made = []
    for _ in range(count):
        event_id = uuid.UUID(bytes=prefix + os.urandom(8)) if prefix else uuid.uuid4()
        made.append(REGISTRY.validate(wire_event(customer=customer, event_id=event_id)))
    return made


def snapshot_rows(path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT upto_position, keys FROM id_snapshot ORDER BY chunk").fetchall()


@pytest.fixture
def small_snapshots(monkeypatch):
    """Rewrite the snapshot once more than 3 ids are outside it, and merge early."""
    monkeypatch.setattr(sqlite_ids, "SNAPSHOT_MIN_TAIL", 3)
    monkeypatch.setattr(sqlite_ids, "MERGE_MIN", 2)


def test_keys_of__are_the_id_keys_of_the_ids():
    ids = [os.urandom(16) for _ in range(50)] + [b"\xff" * 16, bytes(16)]

    assert keys_of(ids).tolist() == [id_key(event_id) for event_id in ids]


@pytest.mark.parametrize("merge_min", [65_536, 1], ids=["recent-dict", "sorted-arrays"])
def test_shared_prefix__two_ids_with_the_same_first_eight_bytes_are_both_stored(tmp_path, monkeypatch, merge_min):
    # given ids that share their first 8 bytes (as uuid7 ids of one millisecond do), wherever the index keeps them
    monkeypatch.setattr(sqlite_ids, "MERGE_MIN", merge_min)
    first, second, third = models(3, prefix=b"\x01\x8f\x00\x00\x00\x00\x70\x00")
    with SQLiteEventStore(tmp_path / "events.db") as store:
        store.append_encoded(encode_events([first]))

        # when a second id with that prefix is appended, then both are retried beside a third
        added = store.append_encoded(encode_events([second]))
        retried = store.append_encoded(encode_events([second, third, first]))

        # then the second was new, and the retry knows each one by its full id
        assert added.duplicates == [False]
        assert list(zip(retried.positions, retried.duplicates)) == [(2, True), (3, False), (1, True)]
        assert store.count() == 3


def test_reopen__duplicates_in_the_snapshot_and_in_the_tail_are_recognised(tmp_path, small_snapshots):
    # given a store whose snapshot covers the first events and whose tail holds the last ones
    path = tmp_path / "events.db"
    early, late = models(5), models(2, customer="ben")
    with SQLiteEventStore(path) as store:
        store.append_encoded(encode_events(early))
        store.append_encoded(encode_events(models(1)))  # starts a transaction that writes the snapshot
        store.append_encoded(encode_events(late))
    assert snapshot_rows(path)[0][0] == 5

    # when a new store object retries all of them
    with SQLiteEventStore(path) as reopened:
        outcomes = reopened.append_encoded(encode_events(early + late))

        # then every one is a duplicate at its original place
        assert outcomes.duplicates == [True] * 7
        assert outcomes.positions == [1, 2, 3, 4, 5, 7, 8]
        assert reopened.count() == 8


def test_reopen__the_index_is_built_from_the_snapshot_and_only_the_rows_after_it(
    tmp_path, small_snapshots, monkeypatch
):
    # given a store with a snapshot as of position 5 and three rows after it
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as store:
        store.append_encoded(encode_events(models(5)))
        store.append_encoded(encode_events(models(3)))
    scanned_after = []
    original_scan = IdIndex.scan

    def recorded_scan(self, conn, after):
        scanned_after.append(after)
        original_scan(self, conn, after)

    monkeypatch.setattr(IdIndex, "scan", recorded_scan)

    # when a new store object appends
    with SQLiteEventStore(path) as reopened:
        reopened.append_encoded(encode_events(models(1)))

        # then it read only the rows after the snapshot
        assert scanned_after == [5]
        assert len(reopened._writer._ids) == 9


def test_snapshot__is_rewritten_as_the_log_grows_and_holds_every_id_up_to_its_position(tmp_path, small_snapshots):
    # given a store that appends in several calls
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as store:
        for _ in range(4):
            store.append_encoded(encode_events(models(3)))
        ids_by_position = {e.position: e.event_id.bytes for e in store.read_all()}

    # then the latest snapshot is as of a later position, with the sorted keys of every id up to it
    (upto, keys), *more = snapshot_rows(path)
    assert upto > 5 and not more
    expected = sorted(index_keys([event_id for position, event_id in ids_by_position.items() if position <= upto]))
    assert np.frombuffer(keys, "<u4").tolist() == expected


def test_other_writer__its_ids_are_recognised_by_a_store_object_that_appended_before(tmp_path):
    # given two store objects on one file, the first with its index already built
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as first, SQLiteEventStore(path) as second:
        first.append_encoded(encode_events(models(1)))
        theirs = models(2, customer="ben")

        # when the second appends events that the first then retries, encoded and through the port
        second.append_encoded(encode_events(theirs))
        encoded_retry = first.append_encoded(encode_events(theirs[:1]))
        port_retry = first.append("customer-ben", [new_event(event_id=theirs[1].event_id, customer="ben")],
                                  expected_version=ANY)

        # then both are duplicates at the places the second store gave them
        assert (encoded_retry.positions, encoded_retry.duplicates) == ([2], [True])
        assert [(o.position, o.duplicate) for o in port_retry.outcomes] == [(3, True)]
        assert first.count() == 3
        assert_chain_intact(first)


def test_snapshot__a_rewrite_rolled_back_with_its_transaction_is_written_again(tmp_path, small_snapshots, monkeypatch):
    # given a store due for a snapshot rewrite whose next transaction fails after writing it
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as store:
        store.append_encoded(encode_events(models(5)))
        writer = store._writer
        original_write = type(writer)._write

        def failing_write(self, batch, heads):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(type(writer), "_write", failing_write)
        with pytest.raises(Exception, match="disk I/O error"):
            store.append_encoded(encode_events(models(1)))
        assert snapshot_rows(path) == []

        # when the next append succeeds
        monkeypatch.setattr(type(writer), "_write", original_write)
        store.append_encoded(encode_events(models(1)))

    # then it wrote the snapshot
    assert snapshot_rows(path)[0][0] == 5


def test_snapshot__split_into_chunks_still_rebuilds_the_whole_index(tmp_path, small_snapshots, monkeypatch):
    # given snapshots written in chunks of 4 ids
    monkeypatch.setattr(sqlite_ids, "SNAPSHOT_CHUNK", 4)
    path = tmp_path / "events.db"
    stored = models(10)
    with SQLiteEventStore(path) as store:
        store.append_encoded(encode_events(stored))
        store.append_encoded(encode_events(models(1)))
    assert [upto for upto, _ in snapshot_rows(path)] == [10, 10, 10]

    # when a new store object retries the events of the snapshot
    with SQLiteEventStore(path) as reopened:
        outcomes = reopened.append_encoded(encode_events(stored))

    # then it knows every one of them
    assert outcomes.positions == list(range(1, 11)) and all(outcomes.duplicates)


def test_close__saves_the_snapshot_when_more_ids_than_its_tail_allows_are_outside_it(tmp_path, small_snapshots):
    # given a store whose last appends left 4 ids after its snapshot (more than 3), none rewriting it
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as store:
        store.append_encoded(encode_events(models(5)))
        store.append_encoded(encode_events(models(2)))  # the snapshot is rewritten as of position 5 first
        store.append_encoded(encode_events(models(2)))
        assert [upto for upto, _ in snapshot_rows(path)] == [5]

    # when it is closed
    # then the snapshot is as of the head, so the next writer reads it and scans no row
    assert [upto for upto, _ in snapshot_rows(path)] == [9]
    with SQLiteEventStore(path) as reopened:
        reopened.append_encoded(encode_events(models(1)))
        assert len(reopened._writer._ids) == 10


def test_long_scan__runs_with_a_small_page_cache_and_sets_it_back(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_ids, "SMALL_SCAN", 2)
    # given a log of 5 events without a snapshot
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as store:
        store.append_encoded(encode_events(models(5)))
    with SQLiteEventStore(path, cache_mib=64) as reopened:
        cache_sizes = []
        original_add = IdIndex.add

        def add(self, ids, positions):
            cache_sizes.append(reopened._writer.conn.execute("PRAGMA cache_size").fetchone()[0])
            original_add(self, ids, positions)

        monkeypatch.setattr(IdIndex, "add", add)

        # when a new store object appends (its index scans the 5 rows: more than 2)
        reopened.append_encoded(encode_events(models(1)))

        # then the scan ran with the small cache, and the writer's own is back after it
        assert cache_sizes[0] == -sqlite_ids.SCAN_CACHE_KIB
        assert reopened._writer.conn.execute("PRAGMA cache_size").fetchone()[0] == -64 * 1024
        assert len(reopened._writer._ids) == 6


def test_positions__held_narrow_until_one_does_not_fit_then_wide_and_still_found(monkeypatch):
    # given an index whose positions all fit in 32 bits, merged into its arrays at once
    monkeypatch.setattr(sqlite_ids, "MERGE_MIN", 1)
    index = IdIndex()
    low, high = [os.urandom(16) for _ in range(3)], [os.urandom(16) for _ in range(2)]
    index.add(low, [1, 2, 2**32 - 1])
    assert index._positions.dtype == np.uint32

    # when positions past 2**32 - 1 are added
    index.add(high, [2**32, 2**40])

    # then the positions are widened, none wrapped: each id's candidates hold its own position
    assert index._positions.dtype == np.int64
    by_key = dict(zip(index._keys.tolist(), index._positions.tolist()))
    assert [by_key[key] for key in index_keys(low + high).tolist()] == [1, 2, 2**32 - 1, 2**32, 2**40]


def test_index_keys__take_every_byte_so_ids_sharing_eight_bytes_spread_like_random_ones():
    # given 100,000 ids that share their first 8 bytes (uuid7 ids of one millisecond) and as many that share their last 8
    prefix, suffix = os.urandom(8), os.urandom(8)
    same_start = [prefix + os.urandom(8) for _ in range(100_000)]
    same_end = [os.urandom(8) + suffix for _ in range(100_000)]

    # when their index keys are taken
    for ids in (same_start, same_end):
        keys = index_keys(ids)

        # then they are 32-bit and almost all distinct: ~1 pair of 100,000 random 32-bit keys is expected to meet
        assert keys.dtype == np.dtype("<u4")
        assert len(np.unique(keys)) >= len(ids) - 10


def test_reopen__a_snapshot_of_eight_byte_keys_is_passed_over_and_every_row_scanned(tmp_path, small_snapshots):
    # given a store whose snapshot holds the 8-byte id prefixes an older version wrote
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as store:
        stored = models(6)
        store.append_encoded(encode_events(stored[:3]))
        store.append_encoded(encode_events(stored[3:]))
    with sqlite3.connect(path) as conn:
        (upto,) = conn.execute("SELECT upto_position FROM id_snapshot").fetchone()
        prefixes = sorted(id_key(model.event_id.bytes) for model in stored[:upto])
        conn.execute("UPDATE id_snapshot SET keys = ?", (np.asarray(prefixes, "<i8").tobytes(),))

    # when the store is reopened and every event is appended again beside a new one
    with SQLiteEventStore(path) as reopened:
        new = models(1)
        reopened.append_encoded(encode_events(stored + new))

        # then the index was built from every row: the six are duplicates, only the new one is stored
        assert len(reopened._writer._ids) == 7
        assert [e.event_id for e in reopened.read_all()] == [m.event_id for m in stored + new]

    # and the snapshot written since holds 32-bit keys
    assert all(len(keys) % 4 == 0 and len(keys) // 4 == upto_ for upto_, keys in snapshot_rows(path))


def test_three_levels__ids_in_the_recent_dict_the_middle_arrays_and_main_are_all_found(tmp_path, monkeypatch):
    # given a writer that appended one event at a time, with small levels, so that ids sit in every part
    monkeypatch.setattr(sqlite_ids, "MERGE_MIN", 2)
    monkeypatch.setattr(sqlite_ids, "MERGE_FRACTION", 2)
    stored = models(20)
    with SQLiteEventStore(tmp_path / "events.db") as store:
        for model in stored:
            store.append_encoded(encode_events([model]))
        index = store._writer._ids
        assert len(index._keys) and len(index._middle_keys) and index._recent
        assert len(index) == 20

        # when every event is appended again beside a new one
        new = models(1)
        outcomes = store.append_encoded(encode_events(stored + new))

        # then each of the twenty is a duplicate at its position, and only the new one is stored
        assert outcomes.duplicates == [True] * 20 + [False]
        assert outcomes.positions == list(range(1, 22))
