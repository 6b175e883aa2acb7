"""The occurred_at range ingestion accepts (1990-01-01 to 24 h after the input was received),
on every decode path, and events already stored outside it still reading back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import uuid4

import orjson
import pytest

from application.bulk_ingest import bulk_load
from application.decode import AcceptedTimes, decode_body, decode_documents, validate_items
from application.ingest import Ingestor
from events.registry import REGISTRY, decode_recorded
from events.store import NewEvent, StreamState
from tests.conftest import wire_event

RECEIVED = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)
TOO_OLD = "1989-12-31T23:59:59Z"
TOO_FAR_AHEAD = "2026-01-11T12:00:01Z"  # a second past a day after RECEIVED


def lines(*events) -> list[bytes]:
    return [orjson.dumps(event) for event in events]


def fields_of(decoded) -> dict[int, list[str]]:
    return {item.index: [error.field for error in item.errors] for item in decoded.invalid}


@pytest.mark.parametrize("occurred_at", [TOO_OLD, TOO_FAR_AHEAD, "9999-12-31T00:00:00Z"])
def test_documents_outside_the_range__are_invalid_items_naming_occurred_at(occurred_at):
    decoded = decode_documents(lines(wire_event(), wire_event(occurred_at=occurred_at)), REGISTRY,
                               received_at=RECEIVED)

    assert fields_of(decoded) == {1: ["occurred_at"]}
    assert len(decoded.events) == 1


@pytest.mark.parametrize("occurred_at", ["1990-01-01T00:00:00Z", "2026-01-11T12:00:00Z", "2026-01-11T13:00:00+01:00"])
def test_the_range_bounds__are_accepted(occurred_at):
    decoded = decode_documents(lines(wire_event(occurred_at=occurred_at)), REGISTRY, received_at=RECEIVED)

    assert not decoded.invalid and len(decoded.events) == 1


def test_the_upper_bound__follows_the_receive_time():
    event = wire_event(occurred_at="2026-06-01T00:00:00Z")

    assert validate_items([event], REGISTRY, received_at=RECEIVED).invalid
    assert not validate_items([event], REGISTRY, received_at=RECEIVED + timedelta(days=150)).invalid


def test_without_a_receive_time__now_is_the_receive_time():
    tomorrow = (datetime.now(timezone.utc) + timedelta(hours=23)).isoformat()
    in_two_days = (datetime.now(timezone.utc) + timedelta(hours=49)).isoformat()

    decoded = validate_items([wire_event(occurred_at=tomorrow), wire_event(occurred_at=in_two_days)], REGISTRY)

    assert fields_of(decoded) == {1: ["occurred_at"]}


@pytest.mark.parametrize("ndjson", [False, True])
def test_a_body_with_one_event_outside__is_refused_whole_naming_that_item(ndjson):
    events = [wire_event(), wire_event(occurred_at=TOO_OLD), wire_event()]
    body = b"\n".join(lines(*events)) if ndjson else orjson.dumps(events)

    decoded = decode_body(body, ndjson, REGISTRY, received_at=RECEIVED)

    assert [(item.index, [e.field for e in item.errors]) for item in decoded.invalid] == [(1, ["occurred_at"])]
    assert len(decoded.batch) == 0 and decoded.invalid_count == 1


def test_a_reason__states_the_range():
    (item,) = validate_items([wire_event(occurred_at=TOO_OLD)], REGISTRY, received_at=RECEIVED).invalid

    assert item.errors[0].reason == (
        "1989-12-31T23:59:59+00:00 is outside the accepted range: from 1990-01-01T00:00:00+00:00 "
        "to 2026-01-11T12:00:00+00:00 (24 hours after the input was received)"
    )


def test_the_range_check_of_a_batch__agrees_with_the_check_of_each_event():
    accepted = AcceptedTimes.received(RECEIVED)
    events = [REGISTRY.validate(wire_event(occurred_at=t)) for t in ("1995-01-01T00:00:00Z", "2026-01-01T00:00:00Z")]
    late = REGISTRY.validate(wire_event(occurred_at=TOO_FAR_AHEAD))

    assert accepted.hold_all(events) and accepted.hold_all([])
    assert not accepted.hold_all([*events, late])


@pytest.mark.parametrize("decoder", ["thread", "process"])
def test_backfill__rejects_lines_outside_the_range_and_stores_the_others(store, decoder):
    data = b"\n".join(lines(wire_event(), wire_event(occurred_at=TOO_OLD), wire_event())) + b"\n"
    rejected = []

    report = bulk_load([data], Ingestor(store), decoder=decoder, on_reject=rejected.append, processes=1)

    assert (report.accepted, report.rejected) == (2, 1)
    assert [(r.line, r.errors[0].field) for r in rejected] == [(2, "occurred_at")]


def test_events_stored_outside_the_range__still_read_back(store):
    old = REGISTRY.validate(wire_event(occurred_at="1970-01-01T00:00:00Z"))
    future = REGISTRY.validate(wire_event(occurred_at="9999-12-31T23:59:59Z"))
    Ingestor(store).append([old, future])

    decoded = [decode_recorded(recorded).event for recorded in store.read_all()]

    assert decoded == [old, future]


def test_an_old_version_stored_outside_the_range__is_upcast_on_reading(store):
    body = {"event_id": str(uuid4()), "occurred_at": "1985-06-01T00:00:00Z", "customer_id": "c-1",
            "data": {"order_id": "o-1", "total_cents": 1990, "currency": "EUR"}}
    store.append("customer-c-1", [NewEvent(uuid4(), "order_placed", 1, datetime(1985, 6, 1, tzinfo=timezone.utc),
                                           orjson.dumps(body))], expected_version=StreamState.ANY)

    (recorded,) = store.read_all()
    event = decode_recorded(recorded).event

    assert str(event.data.revenue) == "19.90" and event.occurred_at.year == 1985
