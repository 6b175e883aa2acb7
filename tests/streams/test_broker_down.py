"""The broker down for a while (not only restarted): ingestion over HTTP keeps accepting,
since the log of record is the store; /healthz says what is down; once the broker is back
(empty, as the bundled one comes back) the relay republishes and the views converge."""

from __future__ import annotations

import time

import pytest

from application.demo import generate
from tests.streams.conftest import assert_views_converge, wait_until

pytestmark = pytest.mark.slow

DOWN_SECONDS = 6.0


def test_broker_down__posts_are_accepted_and_stored_and_the_views_catch_up_when_it_returns(
    live_platform, api, kafka_broker
):
    # given a running platform whose broker goes down
    before = list(generate(100, seed=7101))
    assert api.post("/v1/events", json=before).status_code == 200
    during = list(generate(200, seed=7102))
    kafka_broker.stop()
    try:
        wait_until(lambda: api.get("/healthz").json()["components"]["kafka"]["status"] == "down", 20,
                   "/healthz to see the broker down")

        # when events are posted while it is down
        started = time.monotonic()
        answers = [api.post("/v1/events", json=during[i:i + 500]) for i in range(0, len(during), 500)]

        # then every request is stored at once, as when the broker is up
        assert [answer.status_code for answer in answers] == [200] * len(answers)
        assert sum(answer.json()["accepted"] for answer in answers) == len(during)
        assert live_platform.store.count() == len(before) + len(during)
        assert not live_platform.relay_health()["caught_up"]
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - started)))
    finally:
        kafka_broker.start()  # same port, nothing kept: as a crashed broker comes back

    # and once it is back the relay catches up and the views equal a replay of the log
    wait_until(lambda: live_platform.relay_health().get("caught_up"), 120, "the relay to catch up")
    assert_views_converge(live_platform, timeout=120)
