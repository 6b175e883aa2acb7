"""``Access``: keys, login links and dashboard sessions over an ``AccessStore``.

What a caller presents is checked against the store on every call (a key by its prefix,
then its digest compared in constant time), so a key revoked by another process is
refused at the next request. Login tokens (one-time, ``LOGIN_LINK_TTL``) are exchanged
for a session id (``SESSION_TTL``); the session grants ``read`` only. The store keeps
digests of keys, tokens and session ids, never the values.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from application.access.keys import (
    DASHBOARD_SESSION,
    KeyFormatError,
    KeyRecord,
    Principal,
    Scope,
    digest,
    key_prefix,
    key_record,
    new_key,
    same_digest,
)
from application.access.store import AccessStore, DuplicateKey

ACCESS_FILE = "access.db"
LOGIN_LINK_TTL = timedelta(hours=1)
SESSION_TTL = timedelta(days=7)
ADMIN_KEY_NAME = "admin"
PREFIX_TEXT = re.compile(r"(?:tp_)?([0-9a-f]{8})")  # as `keys list` shows it, or bare

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Unauthorized(Exception):
    """No usable credentials: missing, unknown, malformed, revoked or expired (HTTP 401)."""


class UnknownKey(LookupError):
    """No key has that prefix."""


@dataclass(frozen=True)
class FirstAdminKey:
    """The admin key made at first start: ``key`` is the new key (shown once), None when
    it is the configured ``TOUCHPOINTS_ADMIN_KEY`` (which is never shown)."""

    record: KeyRecord
    key: str | None


class Access:
    def __init__(self, store: AccessStore, *, clock: Clock = utc_now):
        self.store = store
        self.clock = clock

    # --- keys -------------------------------------------------------------------------

    def authenticate_key(self, key: str) -> Principal:
        try:
            prefix = key_prefix(key)
        except KeyFormatError:
            raise Unauthorized("that is not an API key (expected tp_<prefix>_<secret>)") from None
        record = self.store.key(prefix)
        if record is None or not same_digest(key, record.digest):
            raise Unauthorized(f"no such API key (prefix tp_{prefix})")
        if record.revoked_at is not None:
            raise Unauthorized(f"the API key tp_{prefix} ({record.name!r}) was revoked at "
                               f"{record.revoked_at.isoformat()}")
        return Principal.of_key(record)

    def create_key(
        self, *, name: str, scopes: frozenset[Scope], source: str | None = None, types: frozenset[str] | None = None
    ) -> tuple[str, KeyRecord]:
        """A new random key (returned once, never stored) and its record."""
        while True:
            key = new_key()
            record = key_record(key, name=name, scopes=scopes, created_at=self.clock(), source=source, types=types)
            try:
                self.store.add_key(record)
            except DuplicateKey:  # 1 in 4 billion per existing key: draw another prefix
                continue
            return key, record

    def revoke(self, prefix: str) -> KeyRecord:
        matched = PREFIX_TEXT.fullmatch(prefix.strip())
        record = self.store.revoke_key(matched.group(1), self.clock()) if matched else None
        if record is None:
            raise UnknownKey(f"no key has the prefix {prefix!r}")
        return record

    def keys(self) -> list[KeyRecord]:
        return self.store.keys()

    def ensure_admin_key(self, configured: str | None = None) -> FirstAdminKey | None:
        """At first start (no admin key that is not revoked): make one, or register
        ``configured`` (``TOUCHPOINTS_ADMIN_KEY``, already checked for its format) as it.
        None when an admin key exists (``configured`` is then only used if it is one)."""
        if any(Scope.ADMIN in record.scopes and record.revoked_at is None for record in self.store.keys()):
            return None
        scopes = frozenset({Scope.ADMIN})
        if configured is None:
            key, record = self.create_key(name=ADMIN_KEY_NAME, scopes=scopes)
            return FirstAdminKey(record, key)
        record = key_record(configured, name=f"{ADMIN_KEY_NAME} (TOUCHPOINTS_ADMIN_KEY)", scopes=scopes,
                            created_at=self.clock())
        try:
            self.store.add_key(record)
        except DuplicateKey:
            raise DuplicateKey(f"TOUCHPOINTS_ADMIN_KEY has the prefix tp_{record.prefix} of a key that is "
                               "revoked or not an admin key: set a new one") from None
        return FirstAdminKey(record, None)

    # --- the dashboard's login link and sessions -----------------------------------------

    def login_token(self) -> str:
        """A one-time token for ``/login?token=...``, good for ``LOGIN_LINK_TTL``."""
        token = secrets.token_urlsafe(32)
        self.store.add_login_token(digest(token), self.clock() + LOGIN_LINK_TTL)
        return token

    def exchange_login_token(self, token: str) -> str:
        """A new session id for a login token, which stops working; Unauthorized if it
        was used, expired or never issued."""
        now = self.clock()
        if not self.store.take_login_token(digest(token), now):
            raise Unauthorized("this login link was used already, has expired or is not one")
        session = secrets.token_urlsafe(32)
        self.store.add_session(digest(session), now + SESSION_TTL, now=now)
        return session

    def authenticate_session(self, session: str) -> Principal:
        expires_at = self.store.session_expires_at(digest(session))
        if expires_at is None or expires_at <= self.clock():
            raise Unauthorized("the dashboard session has ended: open a new login link")
        return DASHBOARD_SESSION

    def close(self) -> None:
        self.store.close()


def access_path(data: Path | str) -> Path:
    return Path(data) / ACCESS_FILE


def open_access(data: Path | str, *, clock: Clock = utc_now) -> Access:
    """The access control of a data folder: its ``access.db`` (created if missing)."""
    from application.access.sqlite import SqliteAccessStore

    path = access_path(data)
    return Access(SqliteAccessStore(path), clock=clock)
