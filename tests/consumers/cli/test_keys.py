"""`touchpoints keys create|list|revoke` and `touchpoints login-link` on the data folder, no API."""

from __future__ import annotations

import re

import pytest

from application.access import Scope, Unauthorized, open_access
from tests.consumers.helpers import cli


@pytest.fixture(autouse=True)
def data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TOUCHPOINTS_DATA", str(tmp_path))
    monkeypatch.delenv("TOUCHPOINTS_ADMIN_KEY", raising=False)
    return tmp_path


def principal(data, key):
    access = open_access(data)
    try:
        return access.authenticate_key(key)
    finally:
        access.close()


def test_keys_create__prints_the_key_once_on_stdout_and_where_its_hash_is_kept(capsys, data_folder):
    code, out, err = cli(capsys, "keys", "create", "--scope", "read", "--name", "marketing")

    key = out.strip()
    assert code == 0 and re.fullmatch(r"tp_[0-9a-f]{8}_[\w-]{43}", key)
    assert str(data_folder / "access.db") in err and key not in err
    assert principal(data_folder, key).scopes == {Scope.READ}


def test_keys_create__an_emit_key_narrowed_to_a_source_and_types(capsys, data_folder):
    _, out, _ = cli(capsys, "keys", "create", "--scope", "emit", "--name", "web", "--source", "web",
                    "--types", "page_viewed,ad_clicked")

    found = principal(data_folder, out.strip())
    assert (found.source, found.types) == ("web", {"page_viewed", "ad_clicked"})


@pytest.mark.parametrize("argv", [["--scope", "write", "--name", "x"],
                                  ["--scope", "read", "--name", "x", "--source", "web"]])
def test_keys_create__a_bad_request_exits_2_and_makes_no_key(capsys, data_folder, argv):
    code, out, err = cli(capsys, "keys", "create", *argv)

    assert code == 2 and out == "" and err
    assert [r.prefix for r in open_access(data_folder).keys()] == []


def test_keys_list__shows_prefix_name_scopes_and_times_never_the_key(capsys):
    key = cli(capsys, "keys", "create", "--scope", "audit", "--scope", "emit", "--name", "bi")[1].strip()

    code, out, _ = cli(capsys, "keys", "list")

    assert code == 0
    assert key not in out and key.split("_", 2)[2][:10] not in out
    (row,) = out.splitlines()[1:]
    assert row.split()[:3] == [f"tp_{key.split('_')[1]}", "bi", "audit,emit"]


def test_keys_revoke__the_key_is_refused_from_then_on(capsys, data_folder):
    key = cli(capsys, "keys", "create", "--scope", "read", "--name", "old")[1].strip()
    prefix = "tp_" + key.split("_")[1]

    code, out, _ = cli(capsys, "keys", "revoke", prefix)

    assert code == 0 and prefix in out
    with pytest.raises(Unauthorized, match="revoked"):
        principal(data_folder, key)
    assert cli(capsys, "keys", "list")[1].splitlines()[1].split()[5] != "-"  # the revoked column


def test_keys_list__a_data_folder_without_an_access_store_exits_2_naming_it(capsys, data_folder):
    code, out, err = cli(capsys, "keys", "list")

    assert code == 2 and str(data_folder / "access.db") in err
    assert not (data_folder / "access.db").exists()


def test_keys_revoke__an_unknown_prefix_exits_1(capsys):
    cli(capsys, "keys", "create", "--scope", "read", "--name", "x")
    code, _, err = cli(capsys, "keys", "revoke", "tp_00000000")

    assert code == 1 and "tp_00000000" in err


def test_login_link__prints_a_one_time_link_to_the_given_api(capsys, data_folder):
    cli(capsys, "keys", "create", "--scope", "read", "--name", "x")  # the access store exists
    code, out, _ = cli(capsys, "login-link", "--url", "http://127.0.0.1:8123/")

    token = re.fullmatch(r"http://127\.0\.0\.1:8123/login\?token=([\w-]+)\n", out).group(1)
    access = open_access(data_folder)
    try:
        assert access.authenticate_session(access.exchange_login_token(token)).scopes == {Scope.READ}
    finally:
        access.close()
