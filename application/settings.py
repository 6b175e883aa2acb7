"""Settings of a touchpoints process, read once from the environment at an entry point.

Every variable is optional; a bad value raises ``SettingsError`` naming the variable.
Nothing connects or touches the disk when settings are read.

| variable | default | meaning |
|---|---|---|
| ``TOUCHPOINTS_DATA`` | ``./data`` | data folder (the embedded SQLite store lives here) |
| ``TOUCHPOINTS_HOST`` | ``127.0.0.1`` | address the HTTP API listens on |
| ``TOUCHPOINTS_PORT`` | ``8000`` | port of the HTTP API (1-65535; 0 picks a free port) |
| ``TOUCHPOINTS_DEMO`` | ``1`` | load the demo data set when the store is empty (``1/0``, ``true/false``, ``yes/no``, ``on/off``) |
| ``TOUCHPOINTS_DEMO_CUSTOMERS`` | ``2000`` | customers the demo data set generates (positive integer) |
| ``TOUCHPOINTS_STORE`` | ``sqlite:///<TOUCHPOINTS_DATA>/events.db`` | event store URL: ``sqlite:///path`` or ``esdb://host:2113?...`` (KurrentDB) |
| ``TOUCHPOINTS_KAFKA`` | empty | Kafka bootstrap servers (``host:port,host:port``, optionally ``kafka://``-prefixed); empty starts the bundled broker |
| ``TOUCHPOINTS_PARTITIONS`` | ``6`` | partitions of the ``touchpoints.events`` and ``touchpoints.journeys`` topics |
| ``TOUCHPOINTS_MAX_BODY_BYTES`` | ``16777216`` (16 MiB) | largest ``POST /v1/events`` body accepted (larger: 413) |
| ``TOUCHPOINTS_LOG_LEVEL`` | ``INFO`` | ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL`` |
| ``TOUCHPOINTS_EVENTSTORE_URL`` | empty | tests only: a KurrentDB server the contract suite also runs against |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

PREFIX = "TOUCHPOINTS_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
STORE_SCHEMES = ("sqlite", "esdb", "esdb+discover", "kurrentdb", "kurrentdb+discover")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """An environment variable holds a value touchpoints cannot use."""

    def __init__(self, variable: str, reason: str):
        self.variable = variable
        self.reason = reason
        super().__init__(f"{variable}: {reason}")


# Processes that decode large POST /v1/events bodies beside the server's own (0: decode inline).
DEFAULT_INGEST_WORKERS = max(1, min(2, os.cpu_count() or 1))


class Settings(BaseModel):
    """What a touchpoints process needs to know about its environment."""

    model_config = ConfigDict(frozen=True)

    data: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8000
    demo: bool = True
    demo_customers: int = 2000
    store_url: str = "sqlite:///data/events.db"
    kafka: str = ""
    partitions: int = 6
    max_body_bytes: int = 16 * 1024 * 1024
    ingest_workers: int = DEFAULT_INGEST_WORKERS
    log_level: str = "INFO"
    eventstore_url: str = ""

    @property
    def kafka_bootstrap(self) -> list[str]:
        """The bootstrap servers, empty when the bundled broker is to be started."""
        return [server.strip() for server in self.kafka.split(",") if server.strip()]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        reader = _Reader(environ)
        data = Path(reader.text("DATA", "data"))
        return cls(
            data=data,
            host=reader.text("HOST", "127.0.0.1"),
            port=reader.integer("PORT", 8000, low=0, high=65535),
            demo=reader.boolean("DEMO", True),
            demo_customers=reader.integer("DEMO_CUSTOMERS", 2000, low=1),
            store_url=reader.store_url("STORE", default_sqlite_url(data)),
            kafka=reader.kafka("KAFKA"),
            partitions=reader.integer("PARTITIONS", 6, low=1, high=10_000),
            max_body_bytes=reader.integer("MAX_BODY_BYTES", 16 * 1024 * 1024, low=1),
            ingest_workers=reader.integer("INGEST_WORKERS", DEFAULT_INGEST_WORKERS, low=0, high=64),
            log_level=reader.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
            eventstore_url=reader.raw("EVENTSTORE_URL"),
        )


def default_sqlite_url(data: Path) -> str:
    return f"sqlite:///{data / 'events.db'}"


class _Reader:
    """Reads ``TOUCHPOINTS_<NAME>`` variables; empty values count as unset."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ = environ

    def raw(self, name: str) -> str:
        return self._environ.get(PREFIX + name, "").strip()

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self.raw(name)
        if not value:
            return default
        try:
            number = int(value.replace("_", ""))
        except ValueError:
            raise SettingsError(PREFIX + name, f"expected an integer, got {value!r}") from None
        if number < low or (high is not None and number > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SettingsError(PREFIX + name, f"must be {bounds}, got {number}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name).lower()
        if not value:
            return default
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise SettingsError(PREFIX + name, f"expected 1/0, true/false, yes/no or on/off, got {value!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name).upper()
        if not value:
            return default
        if value not in choices:
            raise SettingsError(PREFIX + name, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def store_url(self, name: str, default: str) -> str:
        value = self.raw(name)
        if not value:
            return default
        scheme, separator, rest = value.partition("://")
        if not separator or scheme.lower() not in STORE_SCHEMES:
            accepted = ", ".join(f"{s}://" for s in STORE_SCHEMES)
            raise SettingsError(PREFIX + name, f"expected a URL starting with one of {accepted}, got {value!r}")
        if not rest.strip("/"):
            raise SettingsError(PREFIX + name, f"the URL {value!r} names no database path or host")
        return value

    def kafka(self, name: str) -> str:
        value = self.raw(name).removeprefix("kafka://")
        for server in (s.strip() for s in value.split(",")):
            if not value:
                break
            host, separator, port = server.rpartition(":")
            if not server or not separator or not host or not port.isdigit():
                raise SettingsError(
                    PREFIX + name, f"expected host:port[,host:port...], got {value!r} (bad entry {server!r})"
                )
        return value
