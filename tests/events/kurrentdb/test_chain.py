"""The KurrentDB adapter's hash chain and seals (``events.kurrentdb.chain``): pure
code, tested on hand-made logs. Tampering is simulated by editing those lists."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest

from events.hashing import GENESIS, chain
from events.kurrentdb.chain import (
    GENESIS_STATE,
    ChainState,
    ChainWalker,
    Checkpoints,
    Seal,
    SealBook,
    canonical,
    check_seals,
)
from events.store import RecordedEvent

T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def log_of(count: int) -> list[RecordedEvent]:
    """``count`` events at non-dense positions 100, 250, 400, ..."""
    return [
        RecordedEvent(
            position=100 + 150 * i,
            stream=f"customer-{i % 3}",
            stream_version=i // 3,
            event_id=UUID(int=i + 1),
            type="page_viewed",
            schema_version=1,
            occurred_at=T0 + timedelta(minutes=i),
            recorded_at=T0 + timedelta(minutes=i, microseconds=7),
            data=b'{"n":%d}' % i,
            metadata=b"{}",
        )
        for i in range(count)
    ]


def plain_chain(events: list[RecordedEvent]) -> list[bytes]:
    hashes, previous = [], GENESIS
    for event in events:
        previous = chain(previous, canonical(event))
        hashes.append(previous)
    return hashes


def seals_every(events: list[RecordedEvent], every: int) -> list[Seal]:
    hashes = plain_chain(events)
    return [Seal(events[i].position, i + 1, hashes[i], T0) for i in range(every - 1, len(events), every)]


def walk(events: list[RecordedEvent], seals: list[Seal], start: ChainState = GENESIS_STATE) -> list[bytes]:
    walker = ChainWalker(seals, start)
    return [walker.step(event) for event in events]


# --- the walker -------------------------------------------------------------------------------


def test_walker__without_seals_is_the_plain_chain_from_the_genesis() -> None:
    events = log_of(5)

    assert walk(events, []) == plain_chain(events)


def test_walker__with_matching_seals_is_still_the_plain_chain() -> None:
    events = log_of(7)

    assert walk(events, seals_every(events, 3)) == plain_chain(events)


def test_walker__at_a_sealed_position_the_sealed_hash_wins_and_the_chain_continues_from_it() -> None:
    events = log_of(4)
    forged = Seal(events[1].position, 2, b"\x01" * 32, T0)

    hashes = walk(events, [forged])

    assert hashes[1] == forged.hash
    assert hashes[2] == chain(forged.hash, canonical(events[2]))


def test_walker__a_seal_whose_event_is_gone_re_anchors_the_chain_where_it_was() -> None:
    events = log_of(5)
    seal = seals_every(events, 3)[0]  # at events[2]
    without_sealed = events[:2] + events[3:]

    hashes = walk(without_sealed, [seal])

    assert hashes[2] == chain(seal.hash, canonical(events[3]))


def test_walker__starting_from_a_seal_gives_the_same_hashes_as_from_the_genesis() -> None:
    events = log_of(8)
    seals = seals_every(events, 3)
    whole = walk(events, seals)

    later = [s for s in seals if s.position > seals[0].position]
    from_seal = walk(events[3:], later, ChainState(seals[0].hash, seals[0].count))

    assert from_seal == whole[3:]


def test_walker__counts_events_and_takes_the_count_of_a_seal() -> None:
    events = log_of(4)
    walker = ChainWalker([Seal(events[1].position, 40, b"\x02" * 32, T0)])

    for event in events:
        walker.step(event)

    assert walker.state.count == 42


# --- seals ------------------------------------------------------------------------------------


def test_seal__round_trips_through_json() -> None:
    seal = Seal(2**44 + 3, 10_000, bytes(range(32)), T0)

    assert Seal.from_json(seal.to_json()) == seal


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"position": 1, "count": 1, "hash": "zz", "sealed_at": "2026-03-01T12:00:00Z"}',
        b'{"position": 1, "count": 1, "hash": "00", "sealed_at": "2026-03-01T12:00:00Z"}',
        b'{"position": 1, "count": 0, "hash": "' + b"00" * 32 + b'", "sealed_at": "2026-03-01T12:00:00Z"}',
        b'{"position": 1, "hash": "' + b"00" * 32 + b'", "sealed_at": "2026-03-01T12:00:00Z"}',
    ],
)
def test_seal__a_malformed_stored_seal_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="malformed seal"):
        Seal.from_json(raw)


def test_seal__event_id_is_the_same_for_the_same_point_and_namespace() -> None:
    seal = Seal(500, 10, GENESIS, T0)
    resealed = dataclasses.replace(seal, sealed_at=T0 + timedelta(hours=1))

    assert seal.event_id("prod") == resealed.event_id("prod")
    assert seal.event_id("prod") != seal.event_id("staging")


def test_seal_book__the_first_seal_for_a_position_wins() -> None:
    first, second = Seal(500, 10, b"\x01" * 32, T0), Seal(500, 10, b"\x02" * 32, T0)
    book = SealBook([first])

    added = book.add(second)

    assert not added
    assert book.get(500) == first


def test_seal_book__finds_the_last_seal_before_a_position_skipping_excluded_ones() -> None:
    book = SealBook([Seal(p, i + 1, GENESIS, T0) for i, p in enumerate((100, 300, 500))])

    assert book.last_before(500).position == 300
    assert book.last_before(500, excluding={300}).position == 100
    assert book.last_before(100) is None
    assert [s.position for s in book.after(100)] == [300, 500]


# --- checkpoints ------------------------------------------------------------------------------


def test_checkpoints__give_the_latest_state_strictly_before_a_position() -> None:
    checkpoints = Checkpoints()
    checkpoints.add(100, ChainState(b"\x01" * 32, 1))
    checkpoints.add(400, ChainState(b"\x04" * 32, 4))

    assert checkpoints.last_before(400) == (100, ChainState(b"\x01" * 32, 1))
    assert checkpoints.last_before(401)[0] == 400
    assert checkpoints.last_before(100) is None


@pytest.mark.parametrize("added", [5, 6, 9])
def test_checkpoints__past_capacity_thin_out_but_keep_the_oldest_and_the_newest(added: int) -> None:
    checkpoints = Checkpoints(capacity=4)

    for position in range(1, added + 1):
        checkpoints.add(position * 10, ChainState(GENESIS, position))

    assert len(checkpoints) <= 4
    assert checkpoints.last_before(11) == (10, ChainState(GENESIS, 1))
    assert checkpoints.last_before(10**9) == (added * 10, ChainState(GENESIS, added))


def test_checkpoints__a_discarded_position_is_no_longer_offered() -> None:
    checkpoints = Checkpoints()
    checkpoints.add(100, ChainState(GENESIS, 1))

    checkpoints.discard(100)

    assert checkpoints.last_before(1_000) is None


# --- verification against seals -----------------------------------------------------------------


def test_check_seals__a_clean_log_agrees_with_every_seal() -> None:
    events = log_of(10)

    report = check_seals(events, seals_every(events, 4))

    assert report.ok
    assert (report.events, report.seals_checked, report.unsealed_events) == (10, 2, 2)
    assert report.head_position == events[-1].position
    assert report.head_hash == plain_chain(events)[-1]


def test_check_seals__an_altered_event_is_reported_in_its_seal_interval() -> None:
    events = log_of(10)
    seals = seals_every(events, 4)
    events[5] = dataclasses.replace(events[5], data=b'{"n":999}')

    report = check_seals(events, seals)

    assert [(f.since, f.seal.position, f.problem) for f in report.findings] == [
        (seals[0].position, seals[1].position, "the chain differs from the sealed hash")
    ]


def test_check_seals__a_removed_event_is_reported_in_its_seal_interval() -> None:
    events = log_of(10)
    seals = seals_every(events, 4)

    report = check_seals(events[:1] + events[2:], seals)

    assert [(f.since, f.seal.position) for f in report.findings] == [(None, seals[0].position)]


def test_check_seals__a_removed_sealed_event_is_reported_missing() -> None:
    events = log_of(10)
    seals = seals_every(events, 4)

    report = check_seals(events[:3] + events[4:], seals)

    assert [(f.seal.position, f.problem) for f in report.findings] == [
        (seals[0].position, "the sealed event is missing")
    ]


def test_check_seals__a_removed_tail_leaves_a_seal_beyond_the_newest_event() -> None:
    events = log_of(10)
    seals = seals_every(events, 4)

    report = check_seals(events[:6], seals)

    assert [(f.seal.position, f.problem) for f in report.findings] == [
        (seals[1].position, "sealed beyond the newest event: events were removed")
    ]


def test_check_seals__every_bad_interval_is_reported_not_only_the_first() -> None:
    events = log_of(12)
    seals = seals_every(events, 4)
    events[1] = dataclasses.replace(events[1], stream="customer-x")
    events[9] = dataclasses.replace(events[9], recorded_at=T0)

    report = check_seals(events, seals)

    assert [f.seal.position for f in report.findings] == [seals[0].position, seals[2].position]


def test_check_seals__the_walker_makes_a_generic_verifier_fail_at_the_tampered_seal() -> None:
    events = log_of(10)
    seals = seals_every(events, 4)
    events[5] = dataclasses.replace(events[5], data=b'{"n":999}')

    hashes = walk(events, seals)
    previous, first_bad = GENESIS, None
    for event, digest in zip(events, hashes):
        if first_bad is None and digest != chain(previous, canonical(event)):
            first_bad = event.position
        previous = digest

    assert first_bad == seals[1].position
