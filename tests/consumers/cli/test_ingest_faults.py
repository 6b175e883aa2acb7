"""`touchpoints ingest` when the store cannot write: a disk that fills mid-load, a store file
nobody may write. A clear message and a non-zero exit; what was committed is said; running
the same command again once the fault is gone completes the load, and the log verifies."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

import events.factory
from application.verify import verify_log
from events.sqlite.store import SQLiteEventStore
from tests.conftest import wire_event
from tests.consumers.helpers import cli
from tests.events.sqlite.test_store_faults import read_only_mode, unwritable

EVENTS, BATCH = 3000, 500


def history(folder: Path) -> Path:
    path = folder / "history.ndjson"
    path.write_bytes(b"".join(orjson.dumps(wire_event()) + b"\n" for _ in range(EVENTS)))
    return path


def test_disk_fills_mid_load__exit_3_naming_the_cause_and_a_rerun_completes(tmp_path, capsys, monkeypatch):
    # given a store file that can grow by only a few batches
    source, path = history(tmp_path), tmp_path / "events.db"
    SQLiteEventStore(path).close()

    def cramped(url: str) -> SQLiteEventStore:
        store = SQLiteEventStore(path)
        pages = store._writer.conn.execute("PRAGMA page_count").fetchone()[0]
        store._writer.conn.execute(f"PRAGMA max_page_count={pages + 60}")
        return store

    monkeypatch.setattr(events.factory, "open_store", cramped)

    # when the file is loaded
    code, _, err = cli(capsys, "ingest", str(source), "--store", f"sqlite:///{path}", "--batch-size", str(BATCH))

    # then the load stops with the cause, saying what was committed (whole batches only)
    assert code == 3
    assert "the load failed" in err and "full" in err and str(path) in err
    with SQLiteEventStore(path) as store:
        committed = store.count()
    assert 0 < committed < EVENTS and committed % BATCH == 0
    assert f"committed before stopping: {committed} accepted" in err

    # and once room is made the same command completes the load
    monkeypatch.undo()
    code, out, _ = cli(capsys, "ingest", str(source), "--store", f"sqlite:///{path}", "--batch-size", str(BATCH))
    assert code == 0 and f"accepted: {EVENTS - committed}  duplicates: {committed}" in out
    with SQLiteEventStore(path) as store:
        report = verify_log(store)
    assert report.ok and report.events == EVENTS


def test_read_only_store__clear_message_and_non_zero_exit(tmp_path, capsys):
    # given a store file (and its folder) nobody may write
    source, path = history(tmp_path), tmp_path / "store" / "events.db"
    SQLiteEventStore(path).close()
    for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)

    with unwritable(path, path.parent) if os.geteuid() == 0 else read_only_mode(path, path.parent):
        # when a file is loaded into it
        code, _, err = cli(capsys, "ingest", str(source), "--store", f"sqlite:///{path}")

    # then it says it cannot open the store for writing, and stores nothing
    assert code != 0
    assert "cannot open" in err and str(path) in err
    with SQLiteEventStore(path) as store:
        assert store.count() == 0
