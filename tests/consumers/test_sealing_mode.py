"""Every entry point settles TOUCHPOINTS_SEAL_PERSONAL_DATA against the log's recorded mode:
a contradicting setting stops it before it appends anything (``application.privacy.mode``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from application.demo import load_demo_if_empty
from application.privacy.mode import UNSEALED, SealingModeError, recorded_mode
from application.privacy.policy import Sealing
from application.settings import Settings
from consumers.api.app import create_app
from events.sqlite.store import SQLiteEventStore
from tests.application.privacy.test_sealing import social
from tests.consumers.helpers import ROOT, cli, start_serve

CONTRADICTION = "TOUCHPOINTS_SEAL_PERSONAL_DATA=1 contradicts this log: its personal data is not sealed"


@pytest.fixture
def unsealed_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> Path:
    """A data folder whose log was started unsealed (demo loaded), and an environment that
    now asks for sealing."""
    folder = tmp_path / "data"
    folder.mkdir()
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(folder), "TOUCHPOINTS_DEMO_CUSTOMERS": "20",
                                  "TOUCHPOINTS_SEAL_PERSONAL_DATA": "0"})
    with SQLiteEventStore(folder / "events.db") as store:
        assert load_demo_if_empty(store, settings) > 0
    assert recorded_mode(folder) == UNSEALED
    monkeypatch.setenv("TOUCHPOINTS_DATA", str(folder))
    monkeypatch.setenv("TOUCHPOINTS_SEAL_PERSONAL_DATA", "1")
    yield folder
    Sealing.in_folder(folder).close()


def count(folder: Path) -> int:
    with SQLiteEventStore(folder / "events.db") as store:
        return store.count()


def run_command(folder: Path, *argv: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TOUCHPOINTS_PORT": "0", "TOUCHPOINTS_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "consumers.cli.main", *argv], capture_output=True, text=True,
                          env=environment, cwd=folder, timeout=120)


def test_serve__refuses_to_start_on_a_log_of_the_other_mode(unsealed_log):
    process = start_serve(unsealed_log.parent, TOUCHPOINTS_SEAL_PERSONAL_DATA="1")

    _, err = process.communicate(timeout=120)

    assert process.returncode == 2 and CONTRADICTION in err


def test_up__refuses_to_start_before_it_starts_anything(unsealed_log):
    finished = run_command(unsealed_log.parent, "up")

    assert finished.returncode == 1 and CONTRADICTION in finished.stderr
    assert not (unsealed_log / "run" / "relay.log").exists()


def test_ingest__refuses_and_appends_nothing(unsealed_log, tmp_path, capsys):
    source = tmp_path / "more.ndjson"
    source.write_bytes(orjson.dumps(social("cookie:new", "@new")) + b"\n")
    before = count(unsealed_log)

    code, _, err = cli(capsys, "ingest", str(source), "--quiet")

    assert code == 2 and CONTRADICTION in err and count(unsealed_log) == before


def test_views__the_timeline_command_refuses_too(unsealed_log, capsys):
    code, _, err = cli(capsys, "timeline", "cookie:new", "--no-cache")

    assert code == 2 and CONTRADICTION in err


def test_erase__refuses_on_an_unsealed_log_asked_to_be_sealed(unsealed_log, capsys):
    code, _, err = cli(capsys, "erase", "cookie:new")

    assert code == 2 and CONTRADICTION in err


def test_api__an_app_cannot_be_built_against_the_log_s_mode(unsealed_log):
    settings = Settings.from_env(os.environ)

    with SQLiteEventStore(unsealed_log / "events.db") as store, pytest.raises(SealingModeError, match=CONTRADICTION):
        create_app(store=store, settings=settings)


def test_worker__the_inbound_agent_cannot_be_built_against_the_log_s_mode(unsealed_log):
    from streams.app import create_app as create_worker_app

    settings = Settings.from_env(os.environ)

    with SQLiteEventStore(unsealed_log / "events.db") as store, pytest.raises(SealingModeError, match=CONTRADICTION):
        create_worker_app(settings, bootstrap="127.0.0.1:9", store=store, processors=False)


def test_demo__an_empty_log_is_loaded_in_the_mode_asked_for(tmp_path):
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO_CUSTOMERS": "5",
                                  "TOUCHPOINTS_SEAL_PERSONAL_DATA": "1"})

    with SQLiteEventStore(tmp_path / "events.db") as store:
        load_demo_if_empty(store, settings)

    Sealing.in_folder(tmp_path).close()
    assert recorded_mode(tmp_path).sealed and b"cookie:" not in (tmp_path / "events.db").read_bytes()
