"""occurred_at as an attacker sends it, and any JSON object at all: an event, or an error that
names a field, on every decode path; never another exception."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from events.models import Event, PageViewed
from events.registry import REGISTRY, InvalidEvent
from tests.conftest import wire_event

OVERFLOWING = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
EPOCHS = ["1712000000", 1712000000, 1712000000.25, "1712000000000", "-1"]


def every_decode_path(event: dict) -> list:
    """What each way in makes of ``event``: an Event, or the InvalidEvent it raised."""
    raw = orjson.dumps(event)
    outcomes = []
    for decode in (lambda: REGISTRY.validate(event), lambda: REGISTRY.decode_json(raw)):
        try:
            outcomes.append(decode())
        except InvalidEvent as error:
            outcomes.append(error)
    outcomes.append(REGISTRY.fast_decode_lines([raw]))  # None: the general path names the errors
    outcomes.append(REGISTRY.fast_decode_array(b"[" + raw + b"]"))
    return outcomes


@pytest.mark.parametrize("occurred_at", OVERFLOWING)
def test_time_leaving_the_calendar_in_utc__is_invalid_on_every_path(occurred_at):
    general, from_json, fast_lines, fast_array = every_decode_path(wire_event(occurred_at=occurred_at))

    for error in (general, from_json):
        assert isinstance(error, InvalidEvent)
        assert [e.field for e in error.errors] == ["occurred_at"] and "years 1-9999" in error.errors[0].reason
    assert fast_lines is None and fast_array is None


@pytest.mark.parametrize("occurred_at", EPOCHS)
def test_epoch_numbers__are_invalid_on_every_path(occurred_at):
    general, from_json, fast_lines, fast_array = every_decode_path(wire_event(occurred_at=occurred_at))

    for error in (general, from_json):
        assert isinstance(error, InvalidEvent) and [e.field for e in error.errors] == ["occurred_at"]
    assert fast_lines is None and fast_array is None


@pytest.mark.parametrize("occurred_at", ["2024-03-01T12:00:00Z", "2024-03-01 13:00:00+01:00", "2024-03-01t12:00:00z"])
def test_rfc3339_times__decode_to_utc_on_every_path(occurred_at):
    outcomes = every_decode_path(wire_event(occurred_at=occurred_at))

    events = [outcomes[0], outcomes[1], *(outcomes[2] or []), *(outcomes[3] or [])]
    assert {event.occurred_at for event in events} == {datetime(2024, 3, 1, 12, tzinfo=timezone.utc)}


def test_code_building_events__may_pass_datetime_objects():
    event = PageViewed(event_id="0b7f7a52-3c7e-4d4e-9a4c-5a3e2f1d9c10",
                       occurred_at=datetime(2024, 3, 1, tzinfo=timezone.utc), anonymous_id="a", channel="web")

    assert event.occurred_at == datetime(2024, 3, 1, tzinfo=timezone.utc)


def test_a_naive_datetime_object__is_still_refused():
    with pytest.raises(ValidationError):
        PageViewed(event_id="0b7f7a52-3c7e-4d4e-9a4c-5a3e2f1d9c10", occurred_at=datetime(2024, 3, 1),
                   anonymous_id="a", channel="web")


def test_the_schema__says_date_time():
    schema = REGISTRY.json_schemas()["page_viewed"]["properties"]["occurred_at"]

    assert (schema["type"], schema["format"]) == ("string", "date-time")


# --- any JSON object ---------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
ENVELOPE_KEYS = ["event_id", "type", "occurred_at", "customer_id", "anonymous_id", "channel", "campaign", "source",
                 "data", "schema_version"]
TIMES = st.sampled_from(OVERFLOWING + EPOCHS + ["2024-03-01T12:00:00Z", "2024-02-30T00:00:00Z", "2024-03-01",
                                                "0000-01-01T00:00:00Z", "2024-03-01T12:00:00+25:00"])
TYPES = st.sampled_from(REGISTRY.names() + ["", "nope"])


@st.composite
def mutated_events(draw) -> dict:
    """A valid event of any type, with fields replaced, removed or added at random."""
    event = wire_event(draw(st.sampled_from(["page_viewed", "order_placed", "ad_clicked", "identity_linked"])))
    if event["type"] == "identity_linked":
        event["customer_id"] = "c-1"
    for key in draw(st.lists(st.sampled_from(ENVELOPE_KEYS + ["extra"]), max_size=4)):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            event.pop(key, None)
        elif key == "occurred_at" or choice == 1 and key == "type":
            event[key] = draw(TIMES if key == "occurred_at" else TYPES)
        else:
            event[key] = draw(JSON_VALUES)
    return event


ANY_OBJECT = st.dictionaries(st.sampled_from(ENVELOPE_KEYS) | st.text(max_size=8), JSON_VALUES, max_size=8)


def assert_event_or_named_errors(event: dict) -> None:
    for outcome in every_decode_path(event)[:2]:
        if isinstance(outcome, InvalidEvent):
            assert outcome.errors and all(error.field and error.reason for error in outcome.errors), outcome.errors
        else:
            assert isinstance(outcome, Event)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_any_mutation_of_an_event__decodes_or_names_a_field(event):
    assert_event_or_named_errors(event)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_OBJECT)
def test_any_json_object__decodes_or_names_a_field(event):
    assert_event_or_named_errors(event)
