"""bench/tracking: both paths are given the same events."""

from datetime import datetime, timezone

from application.tracking import TrackingConfig, to_event
from bench.tracking import journeys
from events.registry import REGISTRY


def test_journeys__are_four_messages_each_that_map_to_valid_events_of_each_kind():
    messages = journeys(3)

    events = [to_event(m, received_at=datetime.now(timezone.utc), config=TrackingConfig()) for m in messages]

    assert len(messages) == len(events) == 12
    assert [REGISTRY.validate(event).TYPE for event in events[:4]] == [
        "page_viewed", "event_tracked", "identity_linked", "order_placed"]
    assert events[0]["channel"] == "email"
