"""`touchpoints serve` as a user runs it: a subprocess on a temp data folder, demo data loaded,
the address printed, events accepted, Ctrl-C stops it cleanly."""

import signal
from pathlib import Path

import httpx
import pytest

from tests.consumers.helpers import SERVE_HEADERS, start_serve, stop, wait_for_url

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


def test_serve__loads_demo_into_an_empty_store_prints_the_address_and_stops_on_ctrl_c(tmp_path, make_event):
    process = start_serve(tmp_path, TOUCHPOINTS_DEMO="1", TOUCHPOINTS_DEMO_CUSTOMERS="40")
    try:
        url, lines = wait_for_url(process)
        health = httpx.get(f"{url}/healthz", headers=SERVE_HEADERS, timeout=10).json()
        posted = httpx.post(f"{url}/v1/events", json=make_event(), headers=SERVE_HEADERS, timeout=10)
    finally:
        code = stop(process)

    assert any("loaded" in line and "demo events" in line for line in lines)
    assert health["components"]["store"]["count"] > 100
    assert posted.status_code == 200
    assert code == 0
    assert (tmp_path / "data" / "events.db").exists()


def test_serve__demo_off_leaves_the_store_empty(tmp_path):
    process = start_serve(tmp_path, TOUCHPOINTS_DEMO="0")
    try:
        url, lines = wait_for_url(process)
        health = httpx.get(f"{url}/healthz", headers=SERVE_HEADERS, timeout=10).json()
        head = health["components"]["store"]["head_position"]
    finally:
        stop(process)

    assert head is None
    assert not any("demo events" in line for line in lines)


def test_serve__bad_setting_exits_2_naming_the_variable(tmp_path):
    process = start_serve(tmp_path, TOUCHPOINTS_PORT="http")

    _, err = process.communicate(timeout=60)

    assert process.returncode == 2
    assert "TOUCHPOINTS_PORT" in err


def test_serve__sigterm_stops_it_cleanly_too(tmp_path):
    process = start_serve(tmp_path, TOUCHPOINTS_DEMO="0")
    wait_for_url(process)

    process.send_signal(signal.SIGTERM)

    assert process.wait(30) == 0
