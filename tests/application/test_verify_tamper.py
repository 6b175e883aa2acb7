"""Tampering with a real SQLite store behind the store's back (raw sqlite3), then ``verify``.

Each test copies the demo store, changes it the way someone with file access could,
and checks the first finding names the right position and what happened there.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from uuid import UUID

import pytest

from consumers.cli.main import main
from application.verify import VerifyReport, verify_log
from events.hashing import canonical_bytes
from events.sqlite.store import SQLiteEventStore
from events.times import from_micros

CONTENT = "stream_id, stream_version, event_id, id_key, type, schema_version, occurred_at, recorded_at, data, metadata"


@pytest.fixture
def log(demo_store_path: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "events.db"
    with sqlite3.connect(demo_store_path) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return copy


def verify(path: Path, **options) -> VerifyReport:
    with SQLiteEventStore(path) as store:
        return verify_log(store, **options)


def tamper(path: Path, sql: str, *params) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql, params)


def row(path: Path, position: int, columns: str = "*") -> tuple:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT {columns} FROM events WHERE position = ?", (position,)).fetchone()


def positions_in_two_streams(path: Path, start: int) -> tuple[int, int]:
    """Two positions from ``start`` on whose events belong to different streams."""
    with sqlite3.connect(path) as conn:
        (first, stream), *rest = conn.execute(
            "SELECT position, stream_id FROM events WHERE position >= ? ORDER BY position LIMIT 200", (start,))
    return first, next(position for position, other in rest if other != stream and position > first + 5)


def swap(path: Path, a: int, b: int, columns: str) -> None:
    with sqlite3.connect(path) as conn:
        names = [c.strip() for c in columns.split(",")]
        first = conn.execute(f"SELECT {columns} FROM events WHERE position = ?", (a,)).fetchone()
        second = conn.execute(f"SELECT {columns} FROM events WHERE position = ?", (b,)).fetchone()
        conn.execute("DROP INDEX events_by_stream")  # the swap passes through duplicate (stream, version) pairs
        assignments = ", ".join(f"{name} = ?" for name in names)
        conn.execute(f"UPDATE events SET {assignments} WHERE position = ?", (*second, a))
        conn.execute(f"UPDATE events SET {assignments} WHERE position = ?", (*first, b))
        conn.execute("CREATE UNIQUE INDEX events_by_stream ON events(stream_id, stream_version)")


# --- one change, found where it happened ------------------------------------------------------------------


def test_altering_one_byte_of_an_events_data_is_found_at_that_position(log):
    data = bytearray(row(log, 1234, "data")[0])
    year = data.index(b'"occurred_at":"') + len(b'"occurred_at":"') + 3
    data[year] = ord("9") if data[year] != ord("9") else ord("8")
    tamper(log, "UPDATE events SET data = ? WHERE position = ?", bytes(data), 1234)

    report = verify(log)

    assert report.problems == 1
    assert (report.findings[0].position, report.findings[0].kind) == (1234, "altered")


def test_deleting_one_event_is_found_at_its_position(log):
    tamper(log, "DELETE FROM events WHERE position = ?", 777)

    report = verify(log)

    assert report.problems == 1
    assert (report.findings[0].position, report.findings[0].kind) == (777, "removed")
    assert "position 777 is missing" in report.findings[0].detail


def test_swapping_two_rows_is_found_at_the_first_as_a_reordering(log):
    a, b = positions_in_two_streams(log, 1500)
    swap(log, a, b, CONTENT + ", hash")

    report = verify(log)

    assert (report.findings[0].position, report.findings[0].kind) == (a, "reordered")
    assert f"position {b}" in report.findings[0].detail
    assert {finding.position for finding in report.findings} >= {a, b}


def test_swapping_two_rows_contents_but_not_their_hashes_is_found_at_both(log):
    a, b = positions_in_two_streams(log, 900)
    swap(log, a, b, CONTENT)

    report = verify(log)

    assert [(finding.position, finding.kind) for finding in report.findings] == [(a, "reordered"), (b, "reordered")]


def test_swapping_two_neighbours_is_found_at_the_first(log):
    swap(log, 2000, 2001, CONTENT + ", hash")

    report = verify(log)

    assert (report.findings[0].position, report.findings[0].kind) == (2000, "reordered")


def test_changing_when_an_event_was_recorded_is_found_as_an_alteration(log):
    tamper(log, "UPDATE events SET recorded_at = recorded_at + 1 WHERE position = ?", 321)

    report = verify(log)

    assert (report.findings[0].position, report.findings[0].kind, report.problems) == (321, "altered", 1)


def test_overwriting_a_stored_hash_is_found_at_that_position(log):
    tamper(log, "UPDATE events SET hash = ? WHERE position = ?", hashlib.sha256(b"forged").digest(), 555)

    report = verify(log)

    assert (report.findings[0].position, report.findings[0].kind) == (555, "altered")


def test_data_that_is_no_longer_utf8_is_found_as_an_alteration(log):
    tamper(log, "UPDATE events SET data = ? WHERE position = ?", b'{"x":"\xff"}', 42)

    report = verify(log)

    assert (report.findings[0].position, report.findings[0].kind) == (42, "altered")


def test_the_same_bytes_stored_as_text_still_verify(log):
    tamper(log, "UPDATE events SET data = CAST(data AS TEXT) WHERE position = ?", 42)

    assert verify(log).ok


# --- what only a noted head or the stream versions reveal -------------------------------------------------


def test_removing_the_newest_event_is_found_only_against_the_noted_head(log):
    noted = verify(log).head_hash.hex()
    last = verify(log).last_position
    tamper(log, "DELETE FROM events WHERE position = ?", last)

    without_head, with_head = verify(log), verify(log, expect_head=noted)

    assert without_head.ok
    assert (with_head.findings[0].kind, with_head.findings[0].position) == ("truncated", last)


def test_a_deletion_hidden_by_recomputing_the_chain_still_shows_as_a_removal(log):
    noted = verify(log).head_hash.hex()
    tamper(log, "DELETE FROM events WHERE position = ?", 600)
    rechain(log)

    report = verify(log, expect_head=noted)

    assert [(finding.position, finding.kind) for finding in report.findings] == [(600, "removed"),
                                                                                (report.last_position + 1,
                                                                                 "truncated")]


def rechain(path: Path) -> None:
    """What a forger with file access would do: recompute every stored hash."""
    with sqlite3.connect(path) as conn:
        names = dict(conn.execute("SELECT id, name FROM streams"))
        previous = bytes(32)
        rows = conn.execute("SELECT position, stream_id, event_id, type, schema_version, occurred_at, recorded_at,"
                            " data, metadata FROM events ORDER BY position").fetchall()
        for position, stream_id, event_id, type_, version, occurred, recorded, data, metadata in rows:
            canonical = canonical_bytes(stream=names[stream_id], event_id=UUID(bytes=event_id), type=type_,
                                        schema_version=version, occurred_at=from_micros(occurred),
                                        recorded_at=from_micros(recorded), data=data, metadata=metadata)
            previous = hashlib.sha256(previous + canonical).digest()
            conn.execute("UPDATE events SET hash = ? WHERE position = ?", (previous, position))


# --- the command -----------------------------------------------------------------------------------------


def test_verify_cli__a_tampered_log_exits_1_naming_the_first_position(log, capsys):
    tamper(log, "DELETE FROM events WHERE position = ?", 1000)

    code = main(["verify", "--store", f"sqlite:///{log}"])

    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: 1 problem(s); the first at position 1,000" in out
