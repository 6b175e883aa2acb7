"""TOUCHPOINTS_ADMIN_KEY and TOUCHPOINTS_API_KEY: checked for their format when settings are
read, never shown (not in a repr, not in an error)."""

from __future__ import annotations

import pytest

from application.access.keys import new_key
from application.settings import Settings, SettingsError


@pytest.mark.parametrize("variable", ["TOUCHPOINTS_ADMIN_KEY", "TOUCHPOINTS_API_KEY"])
def test_a_key_setting__is_read_and_kept_out_of_the_settings_repr(variable):
    key = new_key()

    settings = Settings.from_env({variable: key})

    field = settings.admin_key if variable == "TOUCHPOINTS_ADMIN_KEY" else settings.api_key
    assert field.get_secret_value() == key
    assert key not in repr(settings) and key not in str(settings.model_dump())


@pytest.mark.parametrize("value", ["hunter2", "tp_ab12cd34_short", "tp_AB12CD34_" + "a" * 43, "Bearer " + "a" * 50])
def test_a_malformed_admin_key__names_the_variable_and_not_the_value(value):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"TOUCHPOINTS_ADMIN_KEY": value})

    assert raised.value.variable == "TOUCHPOINTS_ADMIN_KEY" and value not in str(raised.value)


def test_no_key_setting__leaves_both_unset():
    settings = Settings.from_env({})

    assert settings.admin_key is None and settings.api_key is None
