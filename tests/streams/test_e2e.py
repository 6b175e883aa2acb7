"""End to end on the real broker, relay and Faust worker: POST -> store -> relay ->
touchpoints.events -> processor -> touchpoints.journeys -> view feed -> live views -> HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import httpx
import pytest

from application.demo import generate
from tests.streams.conftest import PLATFORM_ADMIN_KEY, PLATFORM_HEADERS, assert_views_converge, wait_until

pytestmark = pytest.mark.slow


def touch(customer: str, channel: str, at: str, **extra: object) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "ad_clicked", "occurred_at": at, "customer_id": customer,
            "channel": channel, **extra}


def test_posted_touchpoint__shows_up_in_the_customers_timeline(api):
    event = touch("e2e-anna", "instagram", "2025-03-01T10:00:00Z", campaign="spring")
    posted = api.post("/v1/events", json=event)
    assert posted.status_code in (200, 201), posted.text

    def timeline_has_it():
        response = api.get("/v1/customers/e2e-anna/timeline")
        return response.status_code == 200 and any(e.get("type") == "ad_clicked" for e in response.json()["events"])

    # how fast is measured by bench/stream.py (freshness), not here
    wait_until(timeline_has_it, 15, "the POSTed touchpoint in the timeline", interval=0.02)


def test_posted_order__counts_in_the_attribution_view(api):
    api.post("/v1/events", json=[
        touch("e2e-bob", "tiktok", "2025-03-02T10:00:00Z"),
        {"event_id": str(uuid.uuid4()), "type": "order_placed", "occurred_at": "2025-03-03T10:00:00Z",
         "customer_id": "e2e-bob", "data": {"order_id": "o-e2e-bob", "revenue": "42.50", "currency": "EUR"}},
    ]).raise_for_status()

    def tiktok_converted():
        document = api.get("/v1/attribution", params={"model": "first_touch"}).json()
        return any(row["channel"] == "tiktok" and row["conversions"] >= 1 for row in document["rows"])

    wait_until(tiktok_converted, 10, "the order credited to tiktok")


def test_posted_demo_journeys__live_views_equal_a_replay_of_the_log(live_platform, api):
    events = list(generate(150, seed=404))
    for start in range(0, len(events), 500):
        api.post("/v1/events", json=events[start:start + 500]).raise_for_status()

    assert_views_converge(live_platform)


def test_healthz__reports_the_kafka_bootstrap_and_every_streaming_component(live_platform, api):
    health = api.get("/healthz").json()

    components = health["components"]
    assert components["kafka"]["bootstrap"] == live_platform.bootstrap
    assert components["kafka"]["status"] == "ok"
    assert components["relay"]["status"] == "ok" and components["relay"]["pid"] == live_platform.relay.pid
    assert components["worker"]["status"] == "ok" and components["worker"]["pid"] == live_platform.worker.pid
    assert components["view_feed"]["status"] == "ok"


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_touchpoints_up__serves_a_posted_event_and_stops_cleanly_on_ctrl_c(tmp_path):
    from streams.broker import free_port

    port = free_port()
    env = {**os.environ, "TOUCHPOINTS_DATA": str(tmp_path / "data"), "TOUCHPOINTS_PORT": str(port),
           "TOUCHPOINTS_DEMO": "0", "TOUCHPOINTS_KAFKA": "", "TOUCHPOINTS_STORE": "",
           "TOUCHPOINTS_ADMIN_KEY": PLATFORM_ADMIN_KEY}
    up = subprocess.Popen([sys.executable, "-m", "consumers.cli.main", "up"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers=PLATFORM_HEADERS, timeout=5) as client:
            def healthy():
                try:
                    return client.get("/healthz").json()
                except httpx.HTTPError:
                    return None

            health = wait_until(healthy, 60, "touchpoints up to answer /healthz", interval=0.2)
            assert health["components"]["kafka"]["bootstrap"].startswith("127.0.0.1:")
            children = _children_of(up.pid)
            assert len(children) >= 3  # broker, relay, worker

            client.post("/v1/events", json=touch("up-carla", "email", "2025-04-01T09:00:00Z")).raise_for_status()
            wait_until(lambda: client.get("/v1/customers/up-carla/timeline").status_code == 200, 30,
                       "the event in the timeline")
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert up.returncode == 0, output[-3000:]
    assert f"listening on http://127.0.0.1:{port}" in output
    assert "bundled broker at 127.0.0.1:" in output
    assert f"TOUCHPOINTS_ADMIN_KEY is the admin key tp_{PLATFORM_ADMIN_KEY.split('_')[1]}" in output
    assert f"http://127.0.0.1:{port}/login?token=" in output and PLATFORM_ADMIN_KEY.split("_", 2)[2] not in output
    survivors = [pid for pid in children if _alive(pid)]
    assert survivors == []
