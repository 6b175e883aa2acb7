import gc
import weakref

import pytest

from application import collector
from application.collector import (
    FROZEN_COUNT_EVERY,
    SETTLE_EVERY,
    CollectorPauses,
    collector_paused,
    settle_long_lived_state,
    tune_for_a_long_running_process,
)


@pytest.fixture
def restore_gc():
    was, thresholds = gc.isenabled(), gc.get_threshold()
    yield
    (gc.enable if was else gc.disable)()
    gc.set_threshold(*thresholds)
    gc.unfreeze()
    collector.PAUSES.uninstall()
    collector._SETTLER = collector._Settler()  # untuned again, and no settle remembered


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.parametrize("enabled", [True, False])
def test_collector_paused__pauses_the_cyclic_collector_and_leaves_it_as_the_caller_had_it(enabled, restore_gc):
    (gc.enable if enabled else gc.disable)()

    with collector_paused():
        assert not gc.isenabled()

    assert gc.isenabled() is enabled


def test_collector_paused__restores_the_collector_when_the_block_raises(restore_gc):
    gc.enable()

    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("bulk work failed")

    assert gc.isenabled()


def test_collector_paused__freeze_moves_what_the_block_built_out_of_later_collections(restore_gc):
    gc.enable()

    with collector_paused(freeze=True):
        kept = [[n] for n in range(1000)]

    assert gc.get_freeze_count() >= len(kept)


def test_settle__does_nothing_in_a_process_not_tuned_as_long_running(restore_gc):
    gc.enable()
    frozen = gc.get_freeze_count()

    settled = settle_long_lived_state(now=1_000.0)

    assert not settled
    assert gc.get_freeze_count() == frozen


def test_settle__collects_young_garbage_cycles_and_freezes_what_survived(restore_gc):
    tune_for_a_long_running_process()
    garbage = _Cycle()
    dead = weakref.ref(garbage)
    del garbage
    state = [[n] for n in range(1000)]
    frozen = gc.get_freeze_count()

    settled = settle_long_lived_state(now=1_000.0)

    assert settled
    assert dead() is None  # collected, not frozen for good
    assert gc.get_freeze_count() >= frozen + len(state)


def test_settle__happens_at_most_once_a_settle_interval(restore_gc):
    tune_for_a_long_running_process()

    first = settle_long_lived_state(now=1_000.0)
    too_soon = settle_long_lived_state(now=1_000.0 + SETTLE_EVERY / 2)
    later = settle_long_lived_state(now=1_000.0 + SETTLE_EVERY)

    assert (first, too_soon, later) == (True, False, True)


def test_settle__does_nothing_while_the_collector_is_paused_for_bulk_work(restore_gc):
    tune_for_a_long_running_process()

    with collector_paused():
        settled = settle_long_lived_state(now=1_000.0)

    assert not settled


def test_collector_pauses__counts_each_generations_collections_and_their_longest_pause(restore_gc):
    pauses = CollectorPauses().install()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        pauses.uninstall()
    gc.collect(2)  # after uninstall: not counted

    generations = pauses.stats()["generations"]

    assert [g["collections"] for g in generations] == [1, 0, 1]
    assert generations[2]["longest_seconds"] > 0
    assert generations[2]["seconds"] >= generations[2]["longest_seconds"]


def test_collector_pauses__count_the_unreachable_objects_each_generation_freed(restore_gc):
    # given a reference cycle nothing else reaches
    pauses = CollectorPauses().install()
    try:
        gc.collect(2)
        cycle: list = []
        cycle.append(cycle)
        del cycle

        # when the collector runs
        gc.collect(2)
    finally:
        pauses.uninstall()

    # then it counts what it freed
    assert pauses.stats()["generations"][2]["collected"] >= 1


def test_collector_pauses__count_the_frozen_objects_at_most_once_a_count_interval(restore_gc):
    # given a count taken, then more objects frozen (counting walks every frozen object)
    pauses = CollectorPauses()
    first, _ = pauses.frozen_objects(now=1_000.0)
    kept = [[n] for n in range(1000)]
    gc.freeze()

    # when stats are asked for within the count interval, and once it has passed
    soon = pauses.stats(now=1_000.0 + FROZEN_COUNT_EVERY / 2)
    later = pauses.stats(now=1_000.0 + FROZEN_COUNT_EVERY)

    # then the first answer is the old count with its age, the second a new count
    assert (soon["frozen_objects"], soon["frozen_counted_seconds_ago"]) == (first, FROZEN_COUNT_EVERY / 2)
    assert later["frozen_objects"] >= first + len(kept) and later["frozen_counted_seconds_ago"] == 0
