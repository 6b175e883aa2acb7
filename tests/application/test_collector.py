import gc

import pytest

from application.collector import collector_paused


@pytest.fixture
def restore_gc():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()
    gc.unfreeze()


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
