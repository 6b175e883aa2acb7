"""``SqliteAccessStore``: the access store in its own SQLite file (``<data>/access.db``,
created readable by its owner only). WAL and ``synchronous=FULL``: a revocation the CLI
committed is seen by the next lookup of a running server. One connection, shared by the
server's threads behind a lock (each statement takes microseconds)."""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

from application.access.keys import KeyRecord, Scope
from application.access.store import AccessStoreError, DuplicateKey

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    prefix TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    source TEXT,
    types TEXT
);
CREATE TABLE IF NOT EXISTS login_tokens (digest BLOB PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (digest BLOB PRIMARY KEY, expires_at REAL NOT NULL);
"""

_COLUMNS = "prefix, digest, name, scopes, created_at, revoked_at, source, types"


class SqliteAccessStore:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # SQLite gives the -wal and -shm files the database's mode
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise AccessStoreError(f"cannot open the access store {self.path}: {error}") from error
        self._lock = threading.Lock()

    def add_key(self, record: KeyRecord) -> None:
        row = (
            record.prefix, record.digest, record.name, ",".join(sorted(s.value for s in record.scopes)),
            _text(record.created_at), _text(record.revoked_at), record.source,
            None if record.types is None else ",".join(sorted(record.types)),
        )
        try:
            with self._lock:
                self._db.execute(f"INSERT INTO keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        except sqlite3.IntegrityError:
            raise DuplicateKey(f"a key with prefix {record.prefix} exists") from None

    def key(self, prefix: str) -> KeyRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM keys WHERE prefix = ?", (prefix,)).fetchone()
        return None if row is None else _record(row)

    def keys(self) -> list[KeyRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created_at, prefix").fetchall()
        return [_record(row) for row in rows]

    def revoke_key(self, prefix: str, at: datetime) -> KeyRecord | None:
        with self._lock:
            self._db.execute(
                "UPDATE keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL", (_text(at), prefix)
            )
        return self.key(prefix)

    def add_login_token(self, digest: bytes, expires_at: datetime) -> None:
        with self._lock:
            self._db.execute("INSERT INTO login_tokens VALUES (?, ?)", (digest, expires_at.timestamp()))

    def take_login_token(self, digest: bytes, now: datetime) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM login_tokens WHERE expires_at <= ?", (now.timestamp(),))
                taken = self._db.execute("DELETE FROM login_tokens WHERE digest = ?", (digest,)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return taken == 1

    def add_session(self, digest: bytes, expires_at: datetime, *, now: datetime) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now.timestamp(),))
            self._db.execute("INSERT INTO sessions VALUES (?, ?)", (digest, expires_at.timestamp()))

    def session_expires_at(self, digest: bytes) -> datetime | None:
        with self._lock:
            row = self._db.execute("SELECT expires_at FROM sessions WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else datetime.fromtimestamp(row[0], timezone.utc)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat()


def _record(row: tuple) -> KeyRecord:
    prefix, digest, name, scopes, created_at, revoked_at, source, types = row
    return KeyRecord(
        prefix=prefix, digest=bytes(digest), name=name,
        scopes=frozenset(Scope(s) for s in scopes.split(",")),
        created_at=datetime.fromisoformat(created_at),
        revoked_at=None if revoked_at is None else datetime.fromisoformat(revoked_at),
        source=source, types=None if types is None else frozenset(types.split(",")),
    )
