"""``held_through``: whether the journeys a view server applied hold every event up to each
events partition's last one, from the fold marks of the last whole batches applied
(``touchpoints serve`` against Kafka, where no relay or worker can be asked)."""

from __future__ import annotations

from consumers.api.app import held_through

LAST = {0: 30, 1: 27, 2: 12}  # each partition's last event up to the head


def test_every_partition_folded_through_its_last_event__held():
    assert held_through(LAST, {0: 30, 1: 29, 2: 12}, feed_lag=0) is True


def test_one_partition_folded_short_of_its_last_event__not_held_whatever_the_feeds_lag():
    # given a feed at the end of the journeys topic while partition 1's processor has not published past 21
    assert held_through(LAST, {0: 30, 1: 21, 2: 12}, feed_lag=0) is False


def test_journeys_without_fold_marks__held_once_the_feed_read_the_topic_to_its_end():
    # given journeys of an earlier processor on partition 2 (no mark: nothing to compare)
    folded = {0: 30, 1: 27}

    assert held_through(LAST, folded, feed_lag=4) is False
    assert held_through(LAST, folded, feed_lag=0) is True


def test_an_empty_log__held():
    assert held_through({}, {}, feed_lag=None) is True
