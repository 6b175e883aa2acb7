"""Access over the SQLite access store (a real file): key lifecycle, first-start admin key,
one-time login tokens and sessions, revocation seen by another process's connection."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone

import pytest

from application.access import Scope, Unauthorized, UnknownKey, access_path, open_access
from application.access.keys import new_key
from application.access.service import LOGIN_LINK_TTL, SESSION_TTL
from application.access.store import DuplicateKey


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def access(tmp_path, clock):
    opened = open_access(tmp_path, clock=clock)
    yield opened
    opened.close()


def test_key_lifecycle__created_listed_authenticated_revoked_refused(access, clock):
    key, record = access.create_key(name="marketing", scopes=frozenset({Scope.READ}))
    principal = access.authenticate_key(key)
    clock.now += timedelta(minutes=5)

    revoked = access.revoke(record.shown_prefix)

    assert principal.allows(Scope.READ) and not principal.allows(Scope.AUDIT)
    assert [r.prefix for r in access.keys()] == [record.prefix]
    assert revoked.revoked_at == clock.now
    with pytest.raises(Unauthorized, match="revoked"):
        access.authenticate_key(key)


def test_access_file__holds_no_key_and_only_its_owner_may_read_it(tmp_path, access):
    key, _ = access.create_key(name="svc", scopes=frozenset({Scope.EMIT}))
    access.close()

    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("access.db"))

    assert key.encode() not in stored and key.split("_", 2)[2].encode() not in stored
    assert stat.S_IMODE(os.stat(access_path(tmp_path)).st_mode) == 0o600


def test_authenticate__a_wrong_secret_with_a_known_prefix_is_refused(access):
    key, _ = access.create_key(name="svc", scopes=frozenset({Scope.EMIT}))
    forged = key[:12] + new_key()[12:]

    with pytest.raises(Unauthorized, match="no such API key"):
        access.authenticate_key(forged)


def test_revoke__from_another_connection_is_refused_at_the_next_lookup(tmp_path, access):
    key, record = access.create_key(name="svc", scopes=frozenset({Scope.EMIT}))
    access.authenticate_key(key)

    cli = open_access(tmp_path)  # what `touchpoints keys revoke` opens, beside a running server
    cli.revoke(record.prefix)
    cli.close()

    with pytest.raises(Unauthorized, match="revoked"):
        access.authenticate_key(key)


def test_revoke__an_unknown_prefix_says_so(access):
    with pytest.raises(UnknownKey):
        access.revoke("tp_00000000")


def test_first_start__makes_an_admin_key_once(access):
    first = access.ensure_admin_key()
    second = access.ensure_admin_key()

    assert first.key is not None and access.authenticate_key(first.key).allows(Scope.ADMIN)
    assert second is None


def test_first_start__the_configured_key_becomes_the_admin_key_and_is_not_shown(access):
    configured = new_key()

    first = access.ensure_admin_key(configured)

    assert first.key is None
    assert access.authenticate_key(configured).scopes == frozenset(Scope)


def test_first_start__after_every_admin_key_was_revoked_a_new_one_is_made(access):
    first = access.ensure_admin_key()
    access.revoke(first.record.prefix)

    assert access.ensure_admin_key() is not None


def test_first_start__a_configured_key_whose_prefix_is_taken_is_refused(access):
    key, record = access.create_key(name="svc", scopes=frozenset({Scope.EMIT}))

    with pytest.raises(DuplicateKey, match="TOUCHPOINTS_ADMIN_KEY"):
        access.ensure_admin_key(f"tp_{record.prefix}_{new_key()[12:]}")


def test_login_token__works_once_for_a_read_only_session(access):
    token = access.login_token()

    session = access.exchange_login_token(token)

    assert access.authenticate_session(session).scopes == {Scope.READ}
    with pytest.raises(Unauthorized, match="used already"):
        access.exchange_login_token(token)


def test_login_token__expires(access, clock):
    token = access.login_token()
    clock.now += LOGIN_LINK_TTL

    with pytest.raises(Unauthorized):
        access.exchange_login_token(token)


def test_session__ends_after_its_time(access, clock):
    session = access.exchange_login_token(access.login_token())
    clock.now += SESSION_TTL

    with pytest.raises(Unauthorized, match="ended"):
        access.authenticate_session(session)
