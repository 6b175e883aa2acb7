"""`touchpoints serve` as a user runs it: a subprocess on a temp data folder, demo data loaded,
the address printed, events accepted, Ctrl-C stops it cleanly."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def start_serve(tmp_path, **env):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TOUCHPOINTS_DATA": str(tmp_path / "data"),
                   "TOUCHPOINTS_PORT": "0", "TOUCHPOINTS_LOG_LEVEL": "WARNING", **env}
    environment.pop("TOUCHPOINTS_STORE", None)
    return subprocess.Popen([sys.executable, "-m", "consumers.cli.main", "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment, cwd=tmp_path)


def wait_for_url(process, timeout=90):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return found.group(1), lines
    process.kill()
    raise AssertionError(f"no address printed: {lines} {process.stderr.read()}")


def stop(process):
    process.send_signal(signal.SIGINT)
    return process.wait(30)


def test_serve__loads_demo_into_an_empty_store_prints_the_address_and_stops_on_ctrl_c(tmp_path, make_event):
    process = start_serve(tmp_path, TOUCHPOINTS_DEMO="1", TOUCHPOINTS_DEMO_CUSTOMERS="40")
    try:
        url, lines = wait_for_url(process)
        health = httpx.get(f"{url}/healthz", timeout=10).json()
        posted = httpx.post(f"{url}/v1/events", json=make_event(), timeout=10)
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
        head = httpx.get(f"{url}/healthz", timeout=10).json()["components"]["store"]["head_position"]
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
