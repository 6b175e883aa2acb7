"""The key store in a SQLite file of its own (``<data>/keys.db``), beside the event store.

``secure_delete`` makes SQLite overwrite deleted keys with zeros in the pages it writes,
and a destroy ends with a WAL checkpoint that truncates the journal, where the pages that
held the key before (as written at insert) would otherwise stay until overwritten. Every
commit is ``synchronous=FULL``: a key must be on disk before the event sealed with it is
appended, or a crash could leave events no key opens.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from application.privacy.keys import Destroyed, KeyStoreError

KEYS_FILE = "keys.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, key BLOB NOT NULL, identity BLOB NOT NULL) WITHOUT ROWID;
"""
_CHECKPOINT_ATTEMPTS = 20
_SETUP_SECONDS = 30.0
_CHUNK = 500  # ids per IN (...) query, under SQLite's variable limit


class SQLiteKeyStore:
    """``application.privacy.keys.KeyStore`` over one SQLite file; thread-safe (one lock)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # a store elsewhere (--store) with no data folder yet
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.DatabaseError) as error:
            raise KeyStoreError(f"cannot open the key store {self.path}: {error}") from error
        try:
            self._set_up()
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise KeyStoreError(f"cannot open the key store {self.path}: {error}") from error
        self._pepper: bytes | None = None

    def _set_up(self) -> None:
        # Processes that open a new file at once (forked decoders) race to switch it to WAL:
        # SQLite answers "locked" at once there, without waiting, so the loser tries again.
        deadline = time.monotonic() + _SETUP_SECONDS
        while True:
            try:
                for pragma in ("secure_delete=ON", "journal_mode=WAL", "synchronous=FULL"):
                    self._db.execute(f"PRAGMA {pragma}")
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def pepper(self) -> bytes:
        if self._pepper is None:
            self._pepper = self._pin(b"pepper", os.urandom(32))
        return self._pepper

    def pin(self, name: str, value: str) -> str:
        return self._pin(b"policy:" + name.encode(), value.encode()).decode()

    def _pin(self, name: bytes, value: bytes) -> bytes:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", (name.decode(), value))
            return bytes(self._db.execute("SELECT value FROM meta WHERE name = ?", (name.decode(),)).fetchone()[0])

    def generation(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = 'generation'").fetchone()
        return 0 if row is None else int(row[0])

    def ensure(self, new: Mapping[str, tuple[bytes, bytes]]) -> dict[str, bytes]:
        if not new:
            return {}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO keys (id, key, identity) VALUES (?, ?, ?)",
                    [(key_id, key, identity) for key_id, (key, identity) in new.items()],
                )
                found = self._select("id, key", list(new))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return {key_id: bytes(key) for key_id, key in found}

    def keys(self, ids: Iterable[str]) -> dict[str, bytes]:
        with self._lock:
            return {key_id: bytes(key) for key_id, key in self._select("id, key", list(ids))}

    def identities(self, ids: Iterable[str]) -> dict[str, tuple[bytes, bytes]]:
        with self._lock:
            rows = self._select("id, key, identity", list(ids))
        return {key_id: (bytes(key), bytes(identity)) for key_id, key, identity in rows}

    def destroy(self, ids: Iterable[str]) -> Destroyed:
        ids = list(dict.fromkeys(ids))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    deleted += self._db.execute(f"DELETE FROM keys WHERE id IN ({marks})", chunk).rowcount
                self._db.execute(
                    "INSERT INTO meta (name, value) VALUES ('generation', 1)"
                    " ON CONFLICT (name) DO UPDATE SET value = value + 1"
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            emptied = self._empty_journal()
        return Destroyed(deleted, emptied)

    def _empty_journal(self) -> bool:
        # A reader in another process mid-query holds the journal for a moment: try again.
        for attempt in range(_CHECKPOINT_ATTEMPTS):
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            time.sleep(0.05 * (attempt + 1))
        return False

    def _select(self, columns: str, ids: list[str]) -> list[tuple]:
        rows: list[tuple] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows += self._db.execute(f"SELECT {columns} FROM keys WHERE id IN ({marks})", chunk).fetchall()
        return rows

    def close(self) -> None:
        with self._lock:
            self._db.close()
