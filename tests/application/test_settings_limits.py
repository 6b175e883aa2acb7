"""The HTTP limits and the Host allow-list in the settings."""

from __future__ import annotations

import pytest

from application.settings import Settings, SettingsError


def test_defaults__bound_every_wait_and_the_connections():
    settings = Settings.from_env({})

    assert (settings.header_timeout, settings.body_timeout, settings.keep_alive_timeout) == (10.0, 30.0, 5.0)
    assert settings.max_connections == 256 and settings.allowed_hosts == ()


def test_values__are_read_from_the_environment():
    settings = Settings.from_env({"TOUCHPOINTS_BODY_TIMEOUT": "2.5", "TOUCHPOINTS_MAX_CONNECTIONS": "16",
                                  "TOUCHPOINTS_ALLOWED_HOSTS": "Events.Example.com, api.example.com:8443"})

    assert settings.body_timeout == 2.5 and settings.max_connections == 16
    assert settings.allowed_hosts == ("events.example.com", "api.example.com:8443")


@pytest.mark.parametrize(("variable", "value"), [
    ("TOUCHPOINTS_HEADER_TIMEOUT", "0"), ("TOUCHPOINTS_BODY_TIMEOUT", "soon"),
    ("TOUCHPOINTS_KEEP_ALIVE_TIMEOUT", "-1"), ("TOUCHPOINTS_MAX_CONNECTIONS", "0"),
    ("TOUCHPOINTS_ALLOWED_HOSTS", "http://evil.example/"),
])
def test_a_bad_value__names_its_variable(variable, value):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})

    assert raised.value.variable == variable
