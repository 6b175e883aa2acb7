"""POST /v1/events when the store cannot write: a full disk (``max_page_count``), a file made
immutable, a write lock held past busy_timeout. The caller gets a JSON answer naming the
cause with ``accepted: 0``; nothing of the request is stored; the same request succeeds once
the fault is gone and the log verifies."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from application.verify import verify_log
from tests.conftest import wire_event
from tests.consumers.api.overload import app_server, writer_held_up
from tests.events.sqlite.test_store_faults import disk_full, unwritable

pytestmark = pytest.mark.slow

ROOM = 1 << 30  # no admission limit in the way


def bodies(count: int, size: int) -> list[bytes]:
    return [orjson.dumps([wire_event() for _ in range(size)]) for _ in range(count)]


def test_disk_full__507_store_full_nothing_stored_then_the_retry_is_stored(tmp_path):
    first, refused = bodies(2, 200)
    with app_server(tmp_path, ROOM) as server:
        assert server.post(first).status_code == 200
        with disk_full(server.store):
            # when a request needs room the file does not have
            answer = server.post(refused)

        # then the caller is told the store is full, and nothing of it was stored
        assert answer.status_code == 507
        document = answer.json()
        assert document["error"] == "store_full" and document["accepted"] == 0
        assert "full" in document["detail"]
        assert server.store.count() == 200

        # and once room is made the same request is stored whole
        again = server.post(refused)
        assert again.status_code == 200 and again.json()["accepted"] == 200
        report = verify_log(server.store)
        assert report.ok and report.events == 400


def test_file_made_unwritable__503_naming_the_store_then_the_retry_is_stored(tmp_path):
    first, refused = bodies(2, 20)
    path = tmp_path / "events.db"
    with app_server(tmp_path, ROOM) as server:
        assert server.post(first).status_code == 200
        with unwritable(path, Path(f"{path}-wal")):
            answer = server.post(refused)

        assert answer.status_code == 503
        document = answer.json()
        assert document["error"] == "store_unavailable" and document["accepted"] == 0
        assert "nothing of it was written" in document["detail"]
        assert server.store.count() == 20

        assert server.post(refused).json()["accepted"] == 20
        assert verify_log(server.store).ok and server.store.count() == 40


def test_write_lock_held_past_busy_timeout__503_naming_the_lock_then_the_retry_is_stored(tmp_path):
    (refused,) = bodies(1, 20)
    with app_server(tmp_path, ROOM, busy_timeout=0.3) as server:
        with writer_held_up(tmp_path / "events.db"):
            answer = server.post(refused)

        assert answer.status_code == 503
        document = answer.json()
        assert document["accepted"] == 0 and "locked" in document["detail"]
        assert "busy_timeout" in document["detail"]
        assert server.store.count() == 0

        assert server.post(refused).json()["accepted"] == 20
        assert verify_log(server.store).ok
