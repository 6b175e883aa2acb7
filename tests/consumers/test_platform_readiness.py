"""``settled_through``: whether every event up to a log position is in the views the feed
applied, from the relay's checkpoint, the journey processor's watermarks (as the worker's
stats carry them, a second late) and the view feed's applied offsets. No I/O: the
platform (tests/streams/test_readiness.py) feeds it the real ones."""

from __future__ import annotations

from typing import Any

from consumers.platform import settled_through
from streams.checkpoint import Checkpoint

# the relay acknowledged positions up to 30; the last event on partition 0 is 30, on 1 it is 27
RELAYED = Checkpoint(position=30, offsets={0: 10, 1: 8}, positions={0: 30, 1: 27})


def processor(folded: dict[int, int], published: dict[int, int], lag: int | None = 0,
              rebuilding: list | None = None) -> dict[str, Any]:
    """The processor's part of the worker's stats, keys as text as JSON carries them."""
    return {"folded_positions": {str(p): v for p, v in folded.items()},
            "published_offsets": {str(p): v for p, v in published.items()},
            "lag": lag, "rebuilding": rebuilding or []}


def test_every_relayed_event_folded_and_every_journey_applied__settled():
    # given a processor that folded the last relayed event of each partition, and a feed past its journeys
    stats = processor(folded={0: 30, 1: 27}, published={0: 41, 1: 17})

    # when the views are checked at the head
    report = settled_through(30, RELAYED, stats, applied_offsets={0: 42, 1: 18}, feed_lag=0)

    # then they hold it all
    assert report["settled"] is True
    assert (report["relayed"], report["folded"], report["applied"]) == (True, True, True)


def test_a_processor_whose_lag_says_0_but_that_has_not_folded_the_last_relayed_event__not_settled():
    # given stats written before the relay's last page reached partition 1: its lag, as of its last batch, was 0
    stats = processor(folded={0: 30, 1: 21}, published={0: 41, 1: 17}, lag=0)

    # when the views are checked at the head
    report = settled_through(30, RELAYED, stats, applied_offsets={0: 42, 1: 18}, feed_lag=0)

    # then the events after 21 on partition 1 are still on the way
    assert report["settled"] is False and report["folded"] is False


def test_a_feed_that_has_not_applied_the_processors_last_journeys__not_settled_whatever_its_lag_says():
    # given journeys acknowledged up to offset 17 on partition 1, and a feed whose last fetch ended before them
    stats = processor(folded={0: 30, 1: 27}, published={0: 41, 1: 17})

    # when the views are checked at the head
    report = settled_through(30, RELAYED, stats, applied_offsets={0: 42, 1: 16}, feed_lag=0)

    # then offset 17 of partition 1 is not in the views yet
    assert report["settled"] is False and report["applied"] is False


def test_relay_behind_the_position__not_settled():
    stats = processor(folded={0: 30, 1: 27}, published={0: 41, 1: 17})

    report = settled_through(31, RELAYED, stats, applied_offsets={0: 42, 1: 18}, feed_lag=0)

    assert report["settled"] is False and report["relayed"] is False


def test_a_partition_being_rebuilt__not_settled_though_its_restored_fold_is_ahead():
    # given a partition refolded from its start: its restored watermark still names the old last event
    stats = processor(folded={0: 30, 1: 27}, published={0: 41, 1: 17}, lag=120,
                      rebuilding=[{"partition": 1, "position": 3, "end": 123}])

    report = settled_through(30, RELAYED, stats, applied_offsets={0: 42, 1: 18}, feed_lag=0)

    assert report["settled"] is False


def test_a_relay_db_of_an_earlier_version__the_processors_lag_decides():
    # given a checkpoint that does not know each partition's last position
    earlier = Checkpoint(position=30, offsets={0: 10, 1: 8})
    stats = processor(folded={0: 30, 1: 21}, published={0: 41, 1: 17}, lag=4)

    # when checked with the processor behind, then once its lag is 0
    behind = settled_through(30, earlier, stats, applied_offsets={0: 42, 1: 18}, feed_lag=0)
    caught_up = settled_through(30, earlier, {**stats, "lag": 0}, applied_offsets={0: 42, 1: 18}, feed_lag=0)

    # then the watermark cannot be told, and the lag decides
    assert behind["folded"] is None and behind["settled"] is False
    assert caught_up["settled"] is True


def test_a_worker_of_an_earlier_version__the_lags_decide():
    # given worker stats without watermarks
    stats = {"lag": 0, "rebuilding": []}

    with_feed_behind = settled_through(30, RELAYED, stats, applied_offsets={0: 42}, feed_lag=3)
    with_feed_at_end = settled_through(30, RELAYED, stats, applied_offsets={0: 42}, feed_lag=0)

    assert (with_feed_behind["folded"], with_feed_behind["applied"]) == (None, None)
    assert with_feed_behind["settled"] is False and with_feed_at_end["settled"] is True


def test_an_empty_log__settled_with_nothing_to_reach():
    report = settled_through(None, Checkpoint(), processor(folded={}, published={}), applied_offsets={}, feed_lag=0)

    assert report["settled"] is True
