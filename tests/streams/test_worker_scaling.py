"""Aggregation across workers is commutative: one log gives byte-identical live views
whether 1, 3 or 6 worker processes share its partitions, a worker killed mid-stream and
the group rebalancing included (each processor owns the journeys of its partitions; the
view server groups and aggregates them, so who folded which partition cannot show). The
runs with several workers keep the API's journeys on disk (TOUCHPOINTS_VIEWS_JOURNEYS_ON_DISK)
and the one-worker run in memory, so the same bytes also show the two agree."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from application.demo import generate
from application.journey_spill import SpilledJourneys
from application.replay_report import digest
from consumers.platform import Platform
from tests.streams.conftest import append_events, assert_views_converge, platform_settings, wait_until

pytestmark = pytest.mark.slow

PARTITIONS = 6
CUSTOMERS = 400
SEED = 8101


@pytest.fixture
def fresh_platform(one_worker_digests: dict[str, str], kafka_broker: Any,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # after one_worker_digests: each restarts the shared broker, so they must not overlap
    kafka_broker.restart()
    platform = Platform(platform_settings(tmp_path_factory.mktemp("scaling"), kafka_broker.bootstrap,
                                          partitions=PARTITIONS, views_journeys_on_disk=True))
    platform.start()
    try:
        platform.wait_ready()
        yield platform
    finally:
        platform.stop()


def served_digests(platform: Platform) -> dict[str, str]:
    """What the API serves for every default document, as digests of its bytes."""
    return {name: digest(document) for name, document in platform.views.all_documents().items()}


def assigned(platform: Platform, worker: str) -> list[int]:
    """The events partitions a worker's journey processor holds (from its stats file)."""
    try:
        stats = orjson.loads((platform.run_dir / f"{worker}-stats.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    return (stats.get("processor") or {}).get("assigned") or []


def run_with_workers(platform: Platform, workers: int, *, kill_one: bool) -> dict[str, str]:
    """Append the same demo log in two halves with ``workers`` processes sharing the
    partitions (one of the extras SIGKILLed between the halves when ``kill_one``), wait
    until the live views equal a replay, and give the served documents' digests."""
    extras = [platform.extra_worker(f"worker-{n}") for n in range(2, workers + 1)]
    events = list(generate(CUSTOMERS, seed=SEED))
    try:
        for extra in extras:
            extra.start()
        wait_until(lambda: all(assigned(platform, extra.name) for extra in extras), 90,
                   "every extra worker to be assigned partitions")
        half = len(events) // 2
        append_events(platform, events[:half])
        if kill_one:  # while the first half is still on its way through the processors
            extras[0].kill()
        append_events(platform, events[half:])
        assert_views_converge(platform, timeout=120)
        return served_digests(platform)
    finally:
        for extra in extras:
            extra.stop()


@pytest.fixture(scope="module")
def one_worker_digests(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    kafka_broker.restart()
    platform = Platform(platform_settings(tmp_path_factory.mktemp("one"), kafka_broker.bootstrap,
                                          partitions=PARTITIONS))
    platform.start()
    try:
        platform.wait_ready()
        return run_with_workers(platform, 1, kill_one=False)
    finally:
        platform.stop()


@pytest.mark.parametrize("workers", [3, 6])
def test_workers_sharing_the_partitions__serve_the_same_bytes_as_one_worker(one_worker_digests, fresh_platform,
                                                                            workers):
    # given the log one worker folded into `one_worker_digests` (the API's journeys in memory)
    # when `workers` processes share the partitions and one is killed mid-stream (journeys on disk)
    digests = run_with_workers(fresh_platform, workers, kill_one=True)

    # then every served document is byte-identical to one worker's
    assert isinstance(fresh_platform.views.population.journeys, SpilledJourneys)
    assert digests == one_worker_digests
