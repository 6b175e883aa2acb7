"""A restarted platform (real broker, relay, Faust worker, view feed) serves the default
documents it saved at once, marked as restored, and the live views take over once the
pipeline caught up with them: never older views, never a half-loaded population."""

from __future__ import annotations

import logging

import httpx
import pytest

from application.demo import generate
from application.view_documents import documents_path
from consumers.platform import Platform
from tests.streams.conftest import PLATFORM_HEADERS, append_events, platform_settings, wait_until

pytestmark = pytest.mark.slow

POSITION = "X-Touchpoints-Position"


def test_restarted_platform__serves_saved_documents_at_once_then_the_live_views_take_over(
    kafka_broker, tmp_path, caplog
):
    # given a platform that served the views of a log and stopped (saving its documents)
    kafka_broker.restart()
    settings = platform_settings(tmp_path, kafka_broker.bootstrap)
    with Platform(settings) as first, httpx.Client(base_url=first.base_url, headers=PLATFORM_HEADERS, timeout=10) as api:
        first.wait_ready()
        append_events(first, list(generate(60, seed=91)))
        wait_until(lambda: api.get("/healthz").json()["ready"], 90, "the views to reach the head")
        before = api.get("/v1/funnel")
    assert documents_path(tmp_path).exists()
    head = int(before.headers[POSITION])

    # when it starts again on a broker that lost everything (the bundled broker's restart)
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
