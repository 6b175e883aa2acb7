"""A view feed resumed with the views' saved state (streams.view_feed ``resume``,
application.view_state), on the bundled broker: it follows the journeys topic from where
the saved views stopped when the topic is the same one, and reads a topic the broker
recreated from its beginning without taking the views back."""

from __future__ import annotations

import pytest

from application.live_views import LiveViews
from streams.view_feed import ViewFeed
from tests.streams.conftest import wait_until
from tests.streams.test_processors import (  # noqa: F401 (store: a fixture)
    JourneysTopic, halfway_and_everything, live_journeys, publish_journeys, store,
)

pytestmark = pytest.mark.slow


def stopped_views(tmp_path, bootstrap: str, topic: str, journeys: dict) -> None:
    """Given: views that read ``journeys`` from ``topic``, then stopped cleanly, saving their state."""
    views = LiveViews(background=False, state_folder=tmp_path)
    with ViewFeed(bootstrap, views, topic=topic) as feed:
        wait_until(lambda: feed.stats()["caught_up"] and feed.stats()["applied"] == len(journeys), 30,
                   "the first feed to read the topic")
    assert views.save_state(feed=feed.checkpoint(), event_id="the event at the views' position")
    views.close()


def taken_up(tmp_path) -> tuple[LiveViews, dict]:
    views = LiveViews(background=False, state_folder=tmp_path)
    resume = views.load_state(holds=lambda position, event_id: True, feed="kafka")
    assert resume is not None and resume["kind"] == "kafka"
    return views, resume


def test_resumed_feed__reads_only_what_was_published_after_the_saved_views(kafka_broker, unique_name, store, tmp_path):
    # given views saved after reading the journeys of half the log
    topic = f"{unique_name}.journeys"
    halfway, everything = halfway_and_everything(store)
    publish_journeys(kafka_broker.bootstrap, topic, halfway)
    stopped_views(tmp_path, kafka_broker.bootstrap, topic, halfway)

    # when the processors publish the rest and a new process resumes from the saved state
    publish_journeys(kafka_broker.bootstrap, topic, everything)
    views, resume = taken_up(tmp_path)
    with ViewFeed(kafka_broker.bootstrap, views, topic=topic, resume=resume) as feed:
        wait_until(lambda: feed.stats()["caught_up"] and live_journeys(views).keys() == everything.keys(), 30,
                   "the resumed feed to catch up")

    # then it read the new records alone, and the views hold every journey of the whole log
    assert feed.stats()["records"] == len(everything)
    assert live_journeys(views) == {key: journey.to_bytes() for key, journey in everything.items()}


def test_resumed_feed__a_recreated_topic_is_read_again_without_taking_the_views_back(
    kafka_broker, unique_name, store, tmp_path
):
    # given views saved after reading the journeys of the whole log
    topic = f"{unique_name}.journeys"
    halfway, everything = halfway_and_everything(store)
    journeys_topic = JourneysTopic(kafka_broker.bootstrap, topic)
    publish_journeys(kafka_broker.bootstrap, topic, everything)
    stopped_views(tmp_path, kafka_broker.bootstrap, topic, everything)

    # when the broker lost the topic and the processors, folding the log again, have only
    # republished the journeys of its first half
    journeys_topic.recreate()
    publish_journeys(kafka_broker.bootstrap, topic, halfway)
    views, resume = taken_up(tmp_path)
    with ViewFeed(kafka_broker.bootstrap, views, topic=topic, resume=resume) as feed:
        wait_until(lambda: feed.stats()["caught_up"] and feed.stats()["records"] == len(halfway), 30,
                   "the resumed feed to read the recreated topic")

    # then it read the new topic from its beginning, and the views still hold the whole log
    assert live_journeys(views) == {key: journey.to_bytes() for key, journey in everything.items()}
