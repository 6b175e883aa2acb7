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
CREATE TABLE IF NOT EXISTS keys (id TEXT NOT NULL UNIQUE, key BLOB NOT NULL, identity BLOB NOT NULL);
"""
# The keys table is a rowid table with a unique index on ``id``: new rows go at its end, and
# only the index's small entries land on random pages (ids are random). Key stores made
# before keep the layout they were made with, ``id TEXT PRIMARY KEY ... WITHOUT ROWID``,
# where each ~150-byte row lands on a random page (about twice the CPU a key: 10.6 against
# 5.4 µs, batches of 1,000 into 100,000 keys); every statement here reads and writes both.
_CHECKPOINT_ATTEMPTS = 20
_SETUP_SECONDS = 30.0
_CHUNK = 500  # ids per IN (...) query, under SQLite's variable limit
# Ids are random, so each commit dirties pages all over the id index: a checkpoint every 4,000
# pages rather than SQLite's 1,000 copies a page dirtied by several commits once (with a
# commit's rows in id order: ~20% less CPU a key, 8.3-8.6 against 10.8 µs, batches of 1,000,
# measured on the earlier layout). A destroy still empties the journal at once.
_AUTOCHECKPOINT = "wal_autocheckpoint=4000"


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
                for pragma in ("secure_delete=ON", "journal_mode=WAL", "synchronous=FULL", _AUTOCHECKPOINT):
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
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO keys (id, key, identity) VALUES (?, ?, ?)",
                    sorted((key_id, key, identity) for key_id, (key, identity) in new.items()),  # B-tree order
                )
                # Every row inserted (the common case): the keys are those given, no need to read
                # them back (~1.5 µs a key). Else another process stored some first: read them all.
                inserted_all = self._db.total_changes - before == len(new)
                found = None if inserted_all else self._select("id, key", list(new))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if found is None:
            return {key_id: key for key_id, (key, _) in new.items()}
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
