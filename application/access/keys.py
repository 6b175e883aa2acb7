"""API keys and what they allow: pure domain logic (no I/O, no clock).

A key reads ``tp_<prefix>_<secret>``: ``prefix`` is 8 hex digits stored in clear to tell
keys apart (lists, logs of who did what, the lookup), ``secret`` is
``secrets.token_urlsafe(32)`` (256 random bits). Only the SHA-256 of the whole key is
stored. A slow password hash (bcrypt, scrypt, Argon2) protects low-entropy passwords
against guessing after a leak of the hashes; a 256-bit random secret cannot be guessed
at any hashing speed, so one SHA-256 (about a microsecond) is as safe here and keeps
the per-request check negligible.

Scopes and what each implies (a key holds the union of what its scopes imply):

| scope | allows | implies |
|---|---|---|
| ``emit`` | append events (``POST /v1/events``) | |
| ``read`` | views, timelines, dashboard, schemas, ``/metrics``, ``/healthz`` details | |
| ``audit`` | the log read back (``GET /v1/events``), replay, verify, ``as_of``/``known_at`` views | ``read`` |
| ``admin`` | keys, erasure | ``audit``, ``read``, ``emit`` |

An ``emit`` key can be narrowed to one ``source`` and a set of event types
(``application.access.narrowing``): a key that ships in a web page then cannot write
orders or identity links.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import Enum


class Scope(str, Enum):
    EMIT = "emit"
    READ = "read"
    AUDIT = "audit"
    ADMIN = "admin"


IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.EMIT: frozenset({Scope.EMIT}),
    Scope.READ: frozenset({Scope.READ}),
    Scope.AUDIT: frozenset({Scope.AUDIT, Scope.READ}),
    Scope.ADMIN: frozenset(Scope),
}

KEY_PATTERN = re.compile(r"tp_([0-9a-f]{8})_([A-Za-z0-9_-]{32,256})")
SECRET_BYTES = 32
KEY_FORMAT_HELP = (
    "tp_<8 hex digits>_<at least 32 characters of A-Z a-z 0-9 - _>, e.g. from "
    "python -c 'import secrets; print(f\"tp_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}\")'"
)


class KeyFormatError(ValueError):
    """A text that is not an API key of this format."""


def parse_scopes(texts: list[str] | str) -> frozenset[Scope]:
    """Scopes from names (``"read"``, ``"emit,read"``); an unknown name raises ValueError."""
    names = [texts] if isinstance(texts, str) else texts
    found = set()
    for name in (part.strip() for text in names for part in text.split(",")):
        if not name:
            continue
        try:
            found.add(Scope(name))
        except ValueError:
            raise ValueError(f"unknown scope {name!r} (known: {', '.join(s.value for s in Scope)})") from None
    if not found:
        raise ValueError("at least one scope is needed")
    return frozenset(found)


def granted(scopes: frozenset[Scope]) -> frozenset[Scope]:
    """Every scope ``scopes`` allow, implications included."""
    return frozenset(implied for scope in scopes for implied in IMPLIES[scope])


def key_prefix(key: str) -> str:
    """The prefix of a well-formed key; KeyFormatError otherwise (the message never repeats the key)."""
    matched = KEY_PATTERN.fullmatch(key)
    if matched is None:
        raise KeyFormatError(f"not an API key: expected {KEY_FORMAT_HELP}")
    return matched.group(1)


def new_key() -> str:
    return f"tp_{secrets.token_hex(4)}_{secrets.token_urlsafe(SECRET_BYTES)}"


def digest(secret: str) -> bytes:
    """What is stored of a key, a login token or a session id: its SHA-256."""
    return hashlib.sha256(secret.encode()).digest()


def same_digest(secret: str, stored: bytes) -> bool:
    return hmac.compare_digest(digest(secret), stored)


@dataclass(frozen=True)
class KeyRecord:
    """What the key store keeps of a key: never the key itself."""

    prefix: str
    digest: bytes
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None = None
    source: str | None = None  # emit keys: the only source they may write
    types: frozenset[str] | None = None  # emit keys: the only event types they may write

    @property
    def shown_prefix(self) -> str:
        return f"tp_{self.prefix}"

    def as_dict(self) -> dict[str, object]:
        """What may be shown of a key: everything but its digest."""
        return {
            "prefix": self.shown_prefix, "name": self.name, "scopes": sorted(s.value for s in self.scopes),
            "created_at": self.created_at.isoformat(), "revoked_at": self.revoked_at and self.revoked_at.isoformat(),
            "source": self.source, "types": None if self.types is None else sorted(self.types),
        }


def key_record(
    key: str, *, name: str, scopes: frozenset[Scope], created_at: datetime,
    source: str | None = None, types: frozenset[str] | None = None,
) -> KeyRecord:
    """The record of a new key; narrowing is refused on a key that cannot emit or can do
    more than emit (an admin key narrowed to one source would still be an admin key)."""
    if (source is not None or types is not None) and scopes != {Scope.EMIT}:
        raise ValueError("--source and --types narrow emit keys only: give --scope emit alone")
    if types is not None and not types:
        raise ValueError("a key narrowed to event types needs at least one type")
    if not name.strip():
        raise ValueError("a key needs a name")
    return KeyRecord(key_prefix(key), digest(key), name.strip(), scopes, created_at, None, source, types)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a key (``prefix``) or a dashboard session (``prefix`` None)."""

    name: str
    scopes: frozenset[Scope]  # granted, implications included
    prefix: str | None = None
    source: str | None = None
    types: frozenset[str] | None = None

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes

    @property
    def label(self) -> str:
        return f"key tp_{self.prefix} ({self.name!r})" if self.prefix else self.name

    @classmethod
    def of_key(cls, record: KeyRecord) -> "Principal":
        return cls(record.name, granted(record.scopes), record.prefix, record.source, record.types)


DASHBOARD_SESSION = Principal("the dashboard session", frozenset({Scope.READ}))
