"""A restarted platform (real broker, relay, Faust worker, view feed) after a clean stop
takes up the views' state it saved and answers every query at once; without that state (a
killed process) it serves the default documents it saved at once, marked as restored, and
the live views take over once the pipeline caught up with them: never older views, never a
half-loaded population."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from application.demo import generate
from application import view_state
from application.view_documents import documents_path
from application.view_state import state_folder
from consumers.platform import Platform
from streams import worker_state
from tests.streams.conftest import (
    PLATFORM_HEADERS, append_events, assert_views_converge, platform_settings, wait_until,
)

pytestmark = pytest.mark.slow

POSITION = "X-Touchpoints-Position"


def served_then_stopped(kafka_broker, tmp_path, *, seed: int, read: Callable[[Platform, httpx.Client], Any]):
    """A platform on a fresh broker that served the views of a log (60 demo customers), read
    with ``read`` once at the head, then stopped cleanly; its settings and what ``read`` gave."""
    kafka_broker.restart()
    settings = platform_settings(tmp_path, kafka_broker.bootstrap)
    with Platform(settings) as first, httpx.Client(base_url=first.base_url, headers=PLATFORM_HEADERS, timeout=10) as api:
        first.wait_ready()
        append_events(first, list(generate(60, seed=seed)))
        wait_until(lambda: api.get("/healthz").json()["ready"], 90, "the views to reach the head")
        return settings, read(first, api)


def test_restarted_platform__serves_saved_documents_at_once_then_the_live_views_take_over(
    kafka_broker, tmp_path, caplog
):
    # given a platform that served the views of a log and stopped (saving its documents)
    settings, before = served_then_stopped(kafka_broker, tmp_path, seed=91, read=lambda _, api: api.get("/v1/funnel"))
    assert documents_path(tmp_path).exists()
    head = int(before.headers[POSITION])

    # when it starts again, without the views' state (a killed process saves none), on a broker
    # that lost everything (the bundled broker's restart)
    view_state.discard(state_folder(tmp_path))
    kafka_broker.restart()
    with caplog.at_level(logging.INFO, logger="application.live_views"), Platform(settings) as second, \
            httpx.Client(base_url=second.base_url, headers=PLATFORM_HEADERS, timeout=10) as api:
        at_once = api.get("/v1/funnel")
        restored = api.get("/healthz").json()["components"]["views"]
        waiting = api.get("/v1/attribution", params={"lookback_days": 3})
        wait_until(lambda: api.get("/healthz").json()["components"]["views"]["status"] == "ok", 120,
                   "the live views to take over")
        live = api.get("/v1/funnel")

    # then the saved documents were served before the population was loaded, as restored
    assert at_once.content == before.content
    assert at_once.headers[POSITION] == str(head)
    assert restored["status"] == "restored"
    assert restored["at_head"] is True
    assert waiting.status_code == 503 and "Retry-After" in waiting.headers
    assert "restored view documents at position" in caplog.text
    # and the live views took over at the head: nothing was appended, so the same document
    assert "took over from the restored documents" in caplog.text
    assert live.headers[POSITION] == str(head)
    assert live.content == before.content


def test_restarted_platform__takes_up_the_views_state_of_a_clean_stop_and_answers_every_query_at_once(
    kafka_broker, tmp_path, caplog
):
    # given a platform that served the views of a log and stopped cleanly
    windowed = {"model": "linear", "lookback_days": 30}
    settings, (before, head_before, identities_before) = served_then_stopped(
        kafka_broker, tmp_path, seed=92,
        read=lambda first, api: (api.get("/v1/attribution", params=windowed), first.store.head_position(),
                                 len({recorded.stream for recorded in first.store.read_all()})))  # a journey each
    assert (state_folder(tmp_path) / view_state.STATE_FILE).exists()
    assert (worker_state.state_folder(tmp_path) / worker_state.MANIFEST).exists()

    # when it starts again on a broker that lost everything (the bundled broker's restart)
    kafka_broker.restart()
    with caplog.at_level(logging.INFO), Platform(settings) as second, \
            httpx.Client(base_url=second.base_url, headers=PLATFORM_HEADERS, timeout=10) as api:
        # (taken up in the background, the saved documents served meanwhile: milliseconds at this size)
        at_once = wait_until(lambda: (answer := api.get("/v1/attribution", params=windowed)).status_code == 200
                             and answer, 10, "the views' state to be taken up")
        views = api.get("/healthz").json()["components"]["views"]
        second.wait_ready()
        new_events = list(generate(20, seed=93))
        append_events(second, new_events)  # and the log grows

        # then the views answered every query at once, as they stopped
        assert at_once.content == before.content
        assert at_once.headers[POSITION] == before.headers[POSITION]
        assert views["status"] != "restored"
        assert "views state taken up" in caplog.text
        assert "not the topic the views were saved with" in caplog.text
        # and they follow the log on: what a replay of the whole log gives, identity by identity
        assert_views_converge(second, timeout=120)
        # and the log was not folded again: the worker restored on its saved journeys, the relay
        # published only what came after them
        processor = second.worker_health()["processor"]
    after = second.handed_over_after
    assert after is not None and 0 < after <= head_before
    assert processor["adopted_partitions"] == settings.partitions
    assert processor["base_journeys"] == identities_before
    # folded: the new customers' events and those after the lowest partition's last one, no more
    assert processor["events"] <= len(new_events) + (head_before - after)
    # and nothing was published again: only the journeys those events touched
    assert processor["journeys_published"] <= processor["events"] < identities_before


def test_restarted_platform__whose_views_state_cannot_be_taken_up_gives_the_views_the_journeys_handed_over(
    kafka_broker, tmp_path, caplog
):
    # given a platform that served the views of a log and stopped cleanly
    settings, _ = served_then_stopped(kafka_broker, tmp_path, seed=94, read=lambda first, api: None)
    # whose views' state is damaged after its header (found, handed over, but not taken up)
    state = state_folder(tmp_path) / view_state.STATE_FILE
    magic = len(view_state.MAGIC)
    header_ends = magic + 4 + int.from_bytes(state.read_bytes()[magic:magic + 4], "big")
    with open(state, "r+b") as file:
        file.truncate(header_ends + 16)
    assert view_state.read_header(state_folder(tmp_path)) is not None

    # when it starts again on a broker that lost everything
    kafka_broker.restart()
    with caplog.at_level(logging.INFO), Platform(settings) as second:
        second.wait_ready()
        append_events(second, list(generate(20, seed=95)))

        # then the worker's journeys were handed over all the same, and the views got them from its
        # files (the journeys topic holds only the changes): they equal a replay of the whole log
        assert second.handed_over_after is not None
        assert "could not be taken up" in caplog.text
        assert "journeys handed over to the worker applied" in caplog.text
        assert_views_converge(second, timeout=120)
