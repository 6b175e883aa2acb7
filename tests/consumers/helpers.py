"""Helpers shared by the consumer tests that drive the CLI or the store port."""

from __future__ import annotations

import pytest

from consumers.cli.main import main
from events.sqlite import SQLiteEventStore


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
