"""Helpers shared by the consumer tests that drive the CLI, the store port or a browser."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from application.access.keys import new_key
from consumers.cli.main import main
from events.sqlite.store import SQLiteEventStore


class PortOnly:
    """The SQLite store seen only through the port (no raw fast path)."""

    def __init__(self, store: SQLiteEventStore):
        self._store = store

    def __getattr__(self, name: str):
        if name == "read_raw":
            raise AttributeError(name)
        return getattr(self._store, name)


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """Run ``touchpoints *argv`` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


ROOT = Path(__file__).resolve().parents[2]


# The admin key ``start_serve`` gives a first start (TOUCHPOINTS_ADMIN_KEY), and its headers.
SERVE_ADMIN_KEY = new_key()
SERVE_HEADERS = {"Authorization": f"Bearer {SERVE_ADMIN_KEY}"}


def start_serve(folder: Path, **env: str) -> subprocess.Popen:
    """``touchpoints serve`` as a user starts it: a subprocess on a temp data folder, a free port,
    views from the store (TOUCHPOINTS_STORE and TOUCHPOINTS_KAFKA unset), ``SERVE_ADMIN_KEY``
    as its admin key (send ``SERVE_HEADERS``)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TOUCHPOINTS_DATA": str(folder / "data"),
                   "TOUCHPOINTS_PORT": "0", "TOUCHPOINTS_LOG_LEVEL": "WARNING",
                   "TOUCHPOINTS_ADMIN_KEY": SERVE_ADMIN_KEY}
    for variable in ("TOUCHPOINTS_STORE", "TOUCHPOINTS_KAFKA"):
        environment.pop(variable, None)
    environment.update(env)
    return subprocess.Popen([sys.executable, "-m", "consumers.cli.main", "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment, cwd=folder)


def wait_for_url(process: subprocess.Popen, timeout: float = 90) -> tuple[str, list[str]]:
    """The address the server printed, and the lines it printed up to it."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
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


def stop(process: subprocess.Popen, timeout: float = 30) -> int:
    """Ctrl-C, as a user stops it; killed if it does not stop in time. Returns the exit code."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


CHROMIUM = Path("/usr/bin/chromium")  # Debian's (make browser installs it): no browser download
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """Debian's chromium under playwright, headless; skips the test where it is not installed."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
