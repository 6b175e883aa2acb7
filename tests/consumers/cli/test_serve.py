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


def test_serve__a_clean_stop_saves_the_views_and_the_next_start_answers_every_query_at_once(tmp_path, make_event):
    # given `touchpoints serve` on the demo data, stopped with Ctrl-C once its views held the log
    first = start_serve(tmp_path, TOUCHPOINTS_DEMO="1", TOUCHPOINTS_DEMO_CUSTOMERS="40")
    windowed = {"model": "linear", "lookback_days": 30}
    try:
        url, _ = wait_for_url(first)
        head = httpx.get(f"{url}/healthz", headers=SERVE_HEADERS, timeout=10).json()["components"]["store"][
            "head_position"]
        before = wait_until_at(url, head, windowed)
    finally:
        assert stop(first) == 0
    assert (tmp_path / "data" / "views" / "state.pickle").exists()

    # when it starts again and the log grows
    second = start_serve(tmp_path, TOUCHPOINTS_LOG_LEVEL="INFO")
    try:
        url, _ = wait_for_url(second)
        at_once = wait_until_at(url, head, windowed, within=10)  # taken up in the background: milliseconds here
        posted = httpx.post(f"{url}/v1/events", json=make_event(), headers=SERVE_HEADERS, timeout=10).json()
        after = wait_until_at(url, posted["results"][0]["position"], {})
    finally:
        stop(second)
        log = second.stderr.read()

    # then it answered a query only the live views can at once, from where the first stopped, and followed on
    assert at_once.status_code == 200 and at_once.content == before.content
    assert at_once.headers["X-Touchpoints-Position"] == str(head)
    assert "views state taken up" in log
    assert int(after.headers["X-Touchpoints-Position"]) == posted["results"][0]["position"]


def wait_until_at(url: str, position: int, params: dict, within: float = 60) -> httpx.Response:
    """The attribution document once it reflects ``position``."""
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/v1/attribution", params=params, headers=SERVE_HEADERS, timeout=10)
        if answer.status_code == 200 and int(answer.headers["X-Touchpoints-Position"]) >= position:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"the views did not reach position {position}")
