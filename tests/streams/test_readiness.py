"""/healthz's readiness on the whole platform (real broker, relay, Faust worker, view feed):
the ``views`` component is ``ok`` only when the journey processor holds every partition and
the live views reached the log's head, and then they equal a replay of the log."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from application.demo import generate
from consumers.platform import Platform
from tests.streams.conftest import append_events, live_journeys, replay_journeys

pytestmark = pytest.mark.slow


def views_report(api: Any) -> dict[str, Any]:
    return api.get("/healthz").json()["components"]["views"]


def wait_ready(api: Any, timeout: float) -> dict[str, Any]:
    """The first /healthz answer that says ready (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while not (body := api.get("/healthz").json())["ready"]:
        assert time.monotonic() < deadline, f"not ready within {timeout:.0f} s: {body}"
        time.sleep(0.02)
    return body


@contextmanager
def relay_paused(platform: Platform) -> Iterator[None]:
    """The relay process stopped (SIGSTOP) and resumed after: nothing new reaches Kafka meanwhile."""
    os.kill(platform.relay.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(platform.relay.pid, signal.SIGCONT)


def test_views_behind_the_head__healthz_says_catching_up_with_the_gap(live_platform, api):
    # given a platform whose views caught up with the log
    append_events(live_platform, list(generate(5, seed=71)))
    wait_ready(api, 60)
    held = views_report(api)["position"]

    with relay_paused(live_platform):
        # when 40 events are appended that the relay cannot publish yet
        append_events(live_platform, list(generate(10, seed=72))[:40])
        body = api.get("/healthz").json()

    # then the views are catching up, 40 behind the head; the platform is healthy but not ready
    report = body["components"]["views"]
    assert report["status"] == "catching_up"
    assert (report["position"], report["head"], report["behind"]) == (held, held + 40, 40)
    assert report["relay_checkpoint"] == held
    assert body["status"] == "ok" and body["ready"] is False


def test_views_that_reach_the_head__healthz_says_ok_and_they_equal_a_replay(live_platform, api):
    # given events posted over HTTP
    events = list(generate(120, seed=73))
    for start in range(0, len(events), 500):
        api.post("/v1/events", json=events[start:start + 500]).raise_for_status()

    # when healthz says the platform is ready
    body = wait_ready(api, 60)

    # then the views reached the head, and what they hold is what a replay of the log gives
    report = body["components"]["views"]
    assert report["status"] == "ok"
    assert report["position"] == report["head"] == body["components"]["store"]["head_position"]
    assert report["behind"] == 0 and report["processor_lag"] == 0 and report["view_feed_lag"] == 0
    assert (report["folded"], report["applied"], report["documents_current"]) == (True, True, True)
    assert live_journeys(live_platform) == replay_journeys(live_platform)


def test_a_restarted_worker__views_are_starting_until_its_processor_is_assigned_again(live_platform, api):
    # given a ready platform
    wait_ready(api, 60)

    # when the worker is killed (its supervisor starts another)
    live_platform.worker.kill()
    starting = views_report(api)

    # then the views say they are starting until the new worker holds every partition, then ok
    assert starting["status"] == "starting"
    assert "journey processor" in starting["waiting_for"]
    body = wait_ready(api, 90)
    assert body["components"]["views"]["status"] == "ok"
    assert body["components"]["worker"]["processor"]["assigned"] == list(range(live_platform.settings.partitions))
