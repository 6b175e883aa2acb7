"""The access store port: API keys (as ``KeyRecord``s, never the keys), one-time login
tokens and dashboard sessions (as digests, with an expiry). The default adapter is
``application.access.sqlite.SqliteAccessStore`` (``<data>/access.db``); a server looks a
key up on every request, so a key revoked by another process (the CLI) is refused at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from application.access.keys import KeyRecord


class AccessStoreError(Exception):
    """The access store cannot be used (unreadable file, locked too long)."""


class DuplicateKey(AccessStoreError):
    """A key with that prefix is already stored."""


class AccessStore(Protocol):
    def add_key(self, record: KeyRecord) -> None:
        """Store a new key; ``DuplicateKey`` when its prefix is taken."""

    def key(self, prefix: str) -> KeyRecord | None:
        """The key with that prefix (revoked ones too), None if there is none."""

    def keys(self) -> list[KeyRecord]:
        """Every key, oldest first."""

    def revoke_key(self, prefix: str, at: datetime) -> KeyRecord | None:
        """Mark the key revoked at ``at`` (a key revoked before keeps its first time);
        the record after, None if there is no such key."""

    def add_login_token(self, digest: bytes, expires_at: datetime) -> None: ...

    def take_login_token(self, digest: bytes, now: datetime) -> bool:
        """Remove the token; True when it was there and not expired. A token is good once."""

    def add_session(self, digest: bytes, expires_at: datetime, *, now: datetime) -> None:
        """Store a new session (and forget the sessions that ended before ``now``)."""

    def session_expires_at(self, digest: bytes) -> datetime | None:
        """When the session ends, None if there is no such session."""

    def close(self) -> None: ...
