"""The view feed's lag on the bundled broker: a batch counts in it until it is applied, and a
lag of 0 after a batch is the broker's answer after the batch was applied, not the high
watermarks that came with its fetch."""

from __future__ import annotations

import threading

import pytest

from streams.view_feed import ViewFeed
from tests.streams.conftest import wait_until
from tests.streams.test_processors import (  # noqa: F401 (store: a fixture)
    JourneysTopic, halfway_and_everything, publish_journeys, store,
)

pytestmark = pytest.mark.slow


class SlowViews:
    """Views whose first batch takes until the test lets it go (a large batch at a million
    customers takes seconds); they count what they were given."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.applied = 0
        self.lag_when_applying: int | None = None
        self.feed: ViewFeed | None = None

    def apply_journeys(self, items) -> int:
        if not self.entered.is_set():
            self.lag_when_applying = self.feed.lag()
            self.entered.set()
            self.release.wait(30)
        self.applied += len(items)
        return len(items)


def test_view_feed__journeys_published_while_a_batch_applies_keep_the_lag_above_0(kafka_broker, unique_name, store):
    # given a feed that read every journey published so far and is applying them
    topic = f"{unique_name}.journeys"
    halfway, everything = halfway_and_everything(store)
    JourneysTopic(kafka_broker.bootstrap, topic)
    publish_journeys(kafka_broker.bootstrap, topic, halfway)
    views = SlowViews()
    lags_after_batches: list[int | None] = []
    feed = ViewFeed(kafka_broker.bootstrap, views, topic=topic,
                    listeners=[lambda items: lags_after_batches.append(feed.lag())])
    views.feed = feed
    with feed:
        assert views.entered.wait(30), "the feed never applied a batch"
        # while a batch is being applied, the lag counts it: it is not in the views yet
        assert views.lag_when_applying > 0

        # when the processors publish more before that batch is applied
        publish_journeys(kafka_broker.bootstrap, topic, everything)
        views.release.set()

        # then the feed does not say it is at the end after that batch, and it reads the rest
        wait_until(lambda: lags_after_batches, 30, "the first batch to be applied")
        assert lags_after_batches[0] > 0
        wait_until(lambda: feed.stats()["caught_up"] and views.applied >= len(halfway) + len(everything), 30,
                   "the feed to read what was published meanwhile")
