"""`touchpoints serve` and its keys as a user meets them: the admin key made at first start
(or TOUCHPOINTS_ADMIN_KEY), the login link, and no key, token or session in its log."""

from __future__ import annotations

import re

import httpx
import pytest

from application.access import open_access
from application.access.keys import new_key
from tests.conftest import bearer
from tests.consumers.helpers import start_serve, stop, wait_for_url

pytestmark = pytest.mark.slow


def test_serve__first_start_prints_a_new_admin_key_once_with_where_its_hash_is_kept(tmp_path):
    process = start_serve(tmp_path, TOUCHPOINTS_DEMO="0", TOUCHPOINTS_ADMIN_KEY="")
    try:
        url, lines = wait_for_url(process)
        printed = "".join(lines)
        key = re.search(r"^  (tp_[0-9a-f]{8}_[\w-]+)$", printed, re.MULTILINE).group(1)
        answer = httpx.get(f"{url}/v1/events", headers=bearer(key), timeout=10)
    finally:
        stop(process)
    again = start_serve(tmp_path, TOUCHPOINTS_DEMO="0", TOUCHPOINTS_ADMIN_KEY="")
    try:
        url, later_lines = wait_for_url(again)
        still = httpx.get(f"{url}/v1/events", headers=bearer(key), timeout=10)
    finally:
        stop(again)

    assert f"only its hash is kept, in {tmp_path / 'data' / 'access.db'}" in printed
    assert printed.count(key) == 1 and answer.status_code == 200
    assert "admin key" not in "".join(later_lines) and still.status_code == 200


def test_serve__TOUCHPOINTS_ADMIN_KEY_becomes_the_admin_key_and_is_never_printed(tmp_path):
    key = new_key()
    process = start_serve(tmp_path, TOUCHPOINTS_DEMO="0", TOUCHPOINTS_ADMIN_KEY=key)
    try:
        url, lines = wait_for_url(process)
        answer = httpx.get(f"{url}/v1/keys", headers=bearer(key), timeout=10)
    finally:
        stop(process)
    output = "".join(lines) + process.stdout.read() + process.stderr.read()

    assert f"TOUCHPOINTS_ADMIN_KEY is the admin key tp_{key.split('_')[1]}" in output
    assert key.split("_", 2)[2] not in output
    assert answer.status_code == 200 and answer.json()["keys"][0]["scopes"] == ["admin"]


def test_serve__a_malformed_admin_key_exits_2_naming_the_variable_not_the_value(tmp_path):
    process = start_serve(tmp_path, TOUCHPOINTS_ADMIN_KEY="hunter2-is-my-password")

    out, err = process.communicate(timeout=60)

    assert process.returncode == 2
    assert "TOUCHPOINTS_ADMIN_KEY" in err and "hunter2" not in out + err


def test_serve__keys_login_tokens_and_sessions_never_reach_its_log(tmp_path):
    key = new_key()
    process = start_serve(tmp_path, TOUCHPOINTS_DEMO="0", TOUCHPOINTS_ADMIN_KEY=key, TOUCHPOINTS_LOG_LEVEL="DEBUG")
    secrets = [key.split("_", 2)[2]]
    try:
        url, lines = wait_for_url(process)
        printed_token = re.search(r"/login\?token=([\w-]+)", "".join(lines)).group(1)
        access = open_access(tmp_path / "data")
        emit, _ = access.create_key(name="svc", scopes=access.keys()[0].scopes)
        revoked, record = access.create_key(name="gone", scopes=access.keys()[0].scopes)
        access.revoke(record.prefix)
        token = access.login_token()
        access.close()
        secrets += [emit.split("_", 2)[2], revoked.split("_", 2)[2], token]
        with httpx.Client(base_url=url, timeout=10) as client:
            client.get("/v1/events", headers=bearer(emit))
            client.get("/v1/events", headers=bearer(revoked))
            client.get("/v1/events", auth=(emit, ""))
            client.get("/v1/events", headers=bearer(emit + "x"))
            client.get("/login", params={"token": token})
            secrets.append(client.cookies["touchpoints_session"])
            client.get("/v1/funnel")
            client.get("/login", params={"token": token})
    finally:
        stop(process)
    log = process.stderr.read()
    output = "".join(lines) + process.stdout.read()

    assert log  # DEBUG logging was on
    assert [secret for secret in secrets if secret in log or secret in output] == []
    assert output.count(printed_token) == 1  # the one-time link, printed once
