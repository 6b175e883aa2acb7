"""Planning a SQLite append without a database: repeats, duplicates, versions, chain."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from events.hashing import GENESIS, chain
from events.sqlite.batch import PreparedBatch, StreamHeads, id_key
from events.store import DuplicateEventInBatch, StreamAppend, StreamState, WrongExpectedVersion
from tests.events.contract import new_events

RECORDED = datetime(2030, 1, 1, tzinfo=timezone.utc)


def test_id_key__is_the_signed_first_eight_bytes():
    assert id_key(bytes.fromhex("ffffffffffffffff") + bytes(8)) == -1
    assert id_key(bytes.fromhex("0000000000000102") + b"\xff" * 8) == 258


def test_plan__continues_positions_versions_and_chain_from_the_given_heads():
    events = new_events(2)
    batch = PreparedBatch([StreamAppend("customer-anna", events, 4)], RECORDED)

    streams = StreamHeads({"customer-anna": 7}, {"customer-anna": 4})

    plan = batch.plan({}, streams, head=100, chain_head=GENESIS)

    assert [(row[0], row[1], row[2]) for row in plan.rows] == [(101, 7, 5), (102, 7, 6)]
    assert plan.rows[0][-1] == chain(GENESIS, batch.canonical(0))
    assert plan.rows[1][-1] == chain(plan.rows[0][-1], batch.canonical(1))
    assert (plan.head, plan.chain_head) == (102, plan.rows[1][-1])
    assert streams.versions["customer-anna"] == 6


def test_plan__stored_events_become_duplicates_with_their_original_place():
    old, new = new_events(2)
    batch = PreparedBatch([StreamAppend("customer-anna", [old, new], 0)], RECORDED)

    stored = {old.event_id.bytes: (40, 0)}

    plan = batch.plan(stored, StreamHeads({"customer-anna": 1}, {"customer-anna": 0}), head=50, chain_head=GENESIS)

    outcomes = plan.results[0].outcomes
    assert [(o.position, o.stream_version, o.duplicate) for o in outcomes] == [(40, 0, True), (51, 1, False)]
    assert len(plan.rows) == 1


def test_plan__conflict_raises_before_any_row_is_planned():
    batch = PreparedBatch([StreamAppend("customer-anna", new_events(1), StreamState.NO_STREAM)], RECORDED)

    with pytest.raises(WrongExpectedVersion):
        batch.plan({}, StreamHeads({"customer-anna": 1}, {"customer-anna": 3}), head=10, chain_head=GENESIS)


def test_plan__only_duplicates_need_no_stream_state():
    (event,) = new_events(1)
    batch = PreparedBatch([StreamAppend("customer-anna", [event], 99)], RECORDED)

    assert batch.new_event_streams({event.event_id.bytes: (1, 0)}) == set()
    plan = batch.plan({event.event_id.bytes: (1, 0)}, StreamHeads({}, {}), head=5, chain_head=GENESIS)

    assert plan.rows == [] and plan.results[0].outcomes[0].duplicate


def test_prepare__a_repeated_id_across_streams_is_refused():
    (event,) = new_events(1)

    with pytest.raises(DuplicateEventInBatch, match=str(event.event_id)):
        PreparedBatch([StreamAppend("customer-anna", [event]), StreamAppend("customer-ben", [event])], RECORDED)


def test_stamp__a_later_recorded_at_changes_every_canonical_body():
    batch = PreparedBatch([StreamAppend("customer-anna", new_events(2))], RECORDED)
    before = [batch.canonical(i) for i in range(2)]

    batch.stamp(RECORDED.replace(year=2031))

    assert all(a != batch.canonical(i) for i, a in enumerate(before))
    assert b"2031-01-01T00:00:00.000000Z" in batch.canonical(0)
