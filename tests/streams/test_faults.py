"""Faults on the live platform: in every case the live views converge to exactly what a
replay of the log gives (same journey per identity, same view documents): nothing
lost, nothing counted twice."""

from __future__ import annotations

import threading
import time

import pytest

from application.demo import generate
from tests.streams.conftest import append_events, assert_views_converge, wait_until

pytestmark = pytest.mark.slow


class Stream:
    """Appends a large demo data set to the store in a background thread, in batches."""

    def __init__(self, platform, customers: int, seed: int, *, batch: int = 500, pause: float = 0.02):
        self.events = list(generate(customers, seed=seed))
        self.appended = 0
        self._thread = threading.Thread(target=self._run, args=(platform, batch, pause), daemon=True)

    def _run(self, platform, batch: int, pause: float) -> None:
        for start in range(0, len(self.events), batch):
            self.appended += append_events(platform, self.events[start:start + batch])
            time.sleep(pause)

    def __enter__(self) -> "Stream":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(120)

    def wait_for(self, fraction: float) -> None:
        wait_until(lambda: self.appended >= fraction * len(self.events), 60, f"{fraction:.0%} of the stream")


def test_relay_killed_mid_stream__restarts_and_views_converge(live_platform):
    restarts = live_platform.relay.restarts

    with Stream(live_platform, customers=1500, seed=7001) as stream:
        stream.wait_for(0.3)
        live_platform.relay.kill()
        assert not live_platform.relay.alive

    wait_until(lambda: live_platform.relay.restarts > restarts and live_platform.relay.alive, 30,
               "the supervisor to restart the relay")
    assert_views_converge(live_platform, timeout=90)


def test_worker_killed_mid_stream__restarts_restores_its_journeys_and_views_converge(live_platform):
    restarts = live_platform.worker.restarts

    with Stream(live_platform, customers=1500, seed=7002) as stream:
        stream.wait_for(0.3)
        live_platform.worker.kill()

    wait_until(lambda: live_platform.worker.restarts > restarts and live_platform.worker.alive, 30,
               "the supervisor to restart the worker")
    assert_views_converge(live_platform, timeout=120)
    processor = wait_until(lambda: live_platform.worker_health().get("processor"), 30, "the new worker's stats")
    assert processor["restores"] >= 1


def test_broker_restarted_with_memory_lost__platform_rebuilds_and_views_converge(live_platform, kafka_broker):
    with Stream(live_platform, customers=1000, seed=7003) as stream:
        stream.wait_for(0.3)
        kafka_broker.restart()

    append_events(live_platform, list(generate(50, seed=7004)))
    assert_views_converge(live_platform, timeout=120)
