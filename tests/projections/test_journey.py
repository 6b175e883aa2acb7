from datetime import datetime, timezone
from typing import ClassVar, Literal

import orjson
import pytest

from events.models import CORE_EVENT_TYPES, Event, Touch
from events.registry import EventRegistry
from projections import journey
from projections.journey import IdentityJourney, JourneyFormatError
from tests.projections.spec import at_time, consent, link, logged, merge, order, refund, touch


def fold_one(*events):
    state = journey.initial_state(events[0].stream)
    for entry in logged(events):
        state = journey.evolve(state, entry)
    return state


def test_journey__touch_is_kept_with_time_position_channel_campaign_type_and_source():
    state = fold_one(touch("instagram", at="2024-01-01T10:00", anon="ig:@anna", campaign="spring",
                           type="social_followed", source="l.instagram.com"))

    assert state.touches == [
        (datetime(2024, 1, 1, 10, tzinfo=timezone.utc), 10, "instagram", "spring", "social_followed", "l.instagram.com")
    ]


def test_journey__touch_without_a_source_keeps_none():
    state = fold_one(touch("email", at="2024-01-01", customer="42"))

    assert state.touches[0][5] is None


def test_journey__the_same_event_applied_twice_changes_nothing():
    seen_once = touch("email", at="2024-01-01", customer="42")
    state = fold_one(seen_once)

    applied = state.apply(logged([seen_once], first_position=10)[0])

    assert applied is None
    assert len(state.touches) == 1 and len(state.seen) == 1


def test_journey__order_revenue_and_refund_amount_are_kept_exactly():
    state = fold_one(
        order("o-1", "19.9999", at="2024-01-01", customer="42", currency="USD"),
        refund("o-1", "0.0001", at="2024-01-02", customer="42"),
    )

    assert state.orders[0][2:] == ("o-1", 199_999, "USD")
    assert state.refunds[0][2:4] == ("o-1", 1)


def test_journey__links_and_merges_are_facts_between_streams():
    state = fold_one(link("ig:@anna", "42", at="2024-01-01"), merge("41", "42", at="2024-01-02"))

    assert [fact[2:] for fact in state.links] == [("anonymous-ig:@anna", "customer-42")]
    assert [fact[2:] for fact in state.merges] == [("customer-41", "customer-42")]


def test_journey__latest_consent_per_purpose_wins_whatever_the_arrival_order():
    later = consent("marketing", False, at="2024-02-01", customer="42")
    earlier = consent("marketing", True, at="2024-01-01", customer="42")

    state = fold_one(later, earlier)

    assert state.consents["marketing"][2] is False


def test_journey__round_trips_through_bytes_exactly():
    state = fold_one(
        touch("instagram", at="2024-01-01T10:00:00.123456", customer="42", campaign="spring", source="ig.me"),
        touch("email", at="2024-01-02", customer="42"),
        order("o-1", "120.50", at="2024-01-03", customer="42"),
        refund("o-1", "20", at="2024-01-04", customer="42"),
        link("ig:@anna", "42", at="2024-01-05"),
        merge("41", "42", at="2024-01-06"),
        consent("marketing", True, at="2024-01-07", customer="42"),
    )

    restored = IdentityJourney.from_bytes(state.to_bytes())

    assert restored == state
    assert restored.to_bytes() == state.to_bytes()
    assert restored.seen == state.seen


def test_journey__the_same_events_in_another_arrival_order_give_the_same_bytes():
    events = [touch(ch, at=f"2024-01-0{n + 1}", customer="42") for n, ch in enumerate(["a", "b", "c"])]
    forward, backward = journey.initial_state("customer-42"), journey.initial_state("customer-42")
    entries = logged(events)
    for entry in entries:
        journey.evolve(forward, entry)
    for entry in reversed(entries):
        journey.evolve(backward, entry)

    assert forward.to_bytes() == backward.to_bytes()


def test_journey__bytes_of_another_format_version_are_refused():
    document = orjson.loads(fold_one(touch("email", at="2024-01-01", customer="42")).to_bytes())
    raw = orjson.dumps({**document, "version": 99})

    with pytest.raises(JourneyFormatError, match="version 99"):
        IdentityJourney.from_bytes(raw)


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]"] + [text % journey.VERSION for text in (  # of the current version, else malformed
        b'{"version":%d}', b'{"version":%d,"key":"k","others":"abc"}',
        b'{"version":%d,"key":"k","others":"","touches":[["AAAA","2024-01-01T00:00:00Z",1,"x",null,"t",null]]}',
    )],
)
def test_journey__bytes_that_are_no_journey_are_refused(raw):
    with pytest.raises(JourneyFormatError):
        IdentityJourney.from_bytes(raw)


class SurveyAnswered(Touch):
    TYPE: ClassVar[str] = "survey_answered"
    type: Literal["survey_answered"] = "survey_answered"


def test_journey__a_plugin_event_whose_kind_is_touch_counts_as_a_touch():
    registry = EventRegistry()
    registry.register(SurveyAnswered)
    event = registry.validate(
        {
            "event_id": "00000000-0000-0000-0000-00000000aaaa",
            "type": "survey_answered",
            "occurred_at": at_time("2024-01-01"),
            "anonymous_id": "x",
            "channel": "survey",
        }
    )

    state = fold_one(event)

    assert [fact[2] for fact in state.touches] == ["survey"]


def test_journey__handles_every_core_event_type():
    assert journey.HANDLES == frozenset(model.TYPE for model in CORE_EVENT_TYPES)


class Heartbeat(Event):
    TYPE: ClassVar[str] = "heartbeat"
    KIND: ClassVar[str] = "heartbeat"  # type: ignore[assignment]  # no kind the projections know
    type: Literal["heartbeat"] = "heartbeat"


def test_journey__an_event_of_no_known_kind_leaves_the_state_as_it_was():
    registry = EventRegistry()
    registry.register(Heartbeat)
    event = registry.validate(
        {"event_id": "00000000-0000-0000-0000-00000000bbbb", "type": "heartbeat",
         "occurred_at": at_time("2024-01-01"), "customer_id": "42"}
    )
    state = journey.initial_state("customer-42")
    before = state.to_bytes()

    journey.evolve(state, logged([event])[0])

    assert state.to_bytes() == before
