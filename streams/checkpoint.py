"""The relay's durable checkpoint: how far into the log the broker has acknowledged.

A checkpoint is written only after every record up to ``position`` was
acknowledged (acks=all), so it never runs ahead of what the broker holds.
Besides the position it keeps what the relay knows about the topic it fed:
the topic id and, per partition, the offset just past the last acknowledged
record and the log position of that record (what a readiness check compares the
journey processor's folds with). A broker that lost data (the memory-only bundled
broker restarted, the topic deleted and recreated) shows a missing topic, another
topic id, or end offsets below these numbers: the relay then republishes from the
start.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import orjson


@dataclass(frozen=True)
class Checkpoint:
    position: int | None = None  # last log position the broker acknowledged; None: nothing yet
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> offset after the last acked record
    topic_id: str | None = None  # the topic those offsets belong to, where the broker reports ids
    positions: dict[int, int] = field(default_factory=dict)  # partition -> log position of its last acked record
    updated_at: datetime | None = None


class CheckpointStore(Protocol):
    """Where a relay keeps its checkpoint, one per ``name`` (the topic it feeds)."""

    def load(self, name: str) -> Checkpoint:
        """The saved checkpoint, or an empty ``Checkpoint()`` if none was saved."""
        ...

    def save(self, name: str, checkpoint: Checkpoint) -> None:
        """Replace the checkpoint durably (fsynced before returning)."""
        ...

    def close(self) -> None: ...


class SqliteCheckpointStore:
    """Checkpoints in a small SQLite file (``<data>/relay.db``), written with
    ``synchronous=FULL`` so a saved checkpoint survives a crash or power loss."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the relay may run in a thread other than the one that opened the file
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS relay_checkpoint ("
                " name TEXT PRIMARY KEY, position INTEGER, offsets TEXT NOT NULL,"
                " topic_id TEXT, updated_at TEXT NOT NULL, positions TEXT NOT NULL DEFAULT '{}')"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(relay_checkpoint)")}
            if "positions" not in columns:  # a relay.db of an earlier version: its positions are not known
                self._db.execute("ALTER TABLE relay_checkpoint ADD COLUMN positions TEXT NOT NULL DEFAULT '{}'")

    def load(self, name: str) -> Checkpoint:
        with self._lock:
            row = self._db.execute(
                "SELECT position, offsets, topic_id, updated_at, positions FROM relay_checkpoint WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            return Checkpoint()
        position, offsets, topic_id, updated_at, positions = row
        return Checkpoint(
            position=position,
            offsets=_by_partition(offsets),
            topic_id=topic_id,
            positions=_by_partition(positions),
            updated_at=datetime.fromisoformat(updated_at),
        )

    def save(self, name: str, checkpoint: Checkpoint) -> None:
        updated_at = (checkpoint.updated_at or datetime.now(timezone.utc)).isoformat()
        with self._lock:
            self._db.execute(
                "INSERT INTO relay_checkpoint (name, position, offsets, topic_id, updated_at, positions)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET position = excluded.position,"
                " offsets = excluded.offsets, topic_id = excluded.topic_id, updated_at = excluded.updated_at,"
                " positions = excluded.positions",
                (name, checkpoint.position, _as_text(checkpoint.offsets), checkpoint.topic_id, updated_at,
                 _as_text(checkpoint.positions)),
            )

    def reset(self, name: str) -> None:
        """Forget the checkpoint: the next relay starts from position 0."""
        with self._lock:
            self._db.execute("DELETE FROM relay_checkpoint WHERE name = ?", (name,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "SqliteCheckpointStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _as_text(by_partition: dict[int, int]) -> str:
    return orjson.dumps({str(p): value for p, value in sorted(by_partition.items())}).decode()


def _by_partition(text: str) -> dict[int, int]:
    return {int(partition): value for partition, value in orjson.loads(text).items()}
