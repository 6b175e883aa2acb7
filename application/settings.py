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
| ``TOUCHPOINTS_KAFKA_COMPRESSION`` | ``zstd`` | how the relay and the journey processors compress the record batches they produce: ``zstd``, ``lz4``, ``gzip`` or ``none``. The broker keeps batches as produced: the bundled one holds ~4x less memory an event with ``zstd`` (``python -m bench broker_memory``) |
| ``TOUCHPOINTS_PARTITIONS`` | ``6`` | partitions of the ``touchpoints.events`` and ``touchpoints.journeys`` topics |
| ``TOUCHPOINTS_MAX_BODY_BYTES`` | ``16777216`` (16 MiB) | largest ``POST /v1/events`` body accepted (larger: 413) |
| ``TOUCHPOINTS_INGEST_MAX_PENDING_BYTES`` | ``16777216`` (16 MiB) | bytes of ingestion bodies admitted and not yet answered; a request beyond it gets 429 with ``Retry-After`` (``consumers.api.admission``) |
| ``TOUCHPOINTS_INGEST_MAX_QUEUE_SECONDS`` | ``1`` | longest a request may expect to wait behind those admitted before it (their bytes at the writer's recent rate); beyond it, 429 |
| ``TOUCHPOINTS_ADMIN_KEY`` | empty | at first start (no admin key in ``<data>/access.db``) this becomes the admin key instead of a new one printed once; format ``tp_<8 hex>_<32+ of A-Z a-z 0-9 - _>`` |
| ``TOUCHPOINTS_ALLOWED_HOSTS`` | empty | ``Host`` names the HTTP API answers besides ``localhost``, ``TOUCHPOINTS_HOST``, IP addresses and names without a dot (comma-separated ``name``, ``name:port``, or ``*`` for any); others get 421 (DNS rebinding, ``consumers.api.guards``) |
| ``TOUCHPOINTS_HEADER_TIMEOUT`` | ``10`` | seconds a client has to send a request's headers (from connecting, or from its first byte on a kept-alive connection) |
| ``TOUCHPOINTS_BODY_TIMEOUT`` | ``30`` | seconds a client has to send a ``POST /v1/events`` body (408 after); any other request body: this plus 5 s, then the connection is closed |
| ``TOUCHPOINTS_KEEP_ALIVE_TIMEOUT`` | ``5`` | seconds an idle kept-alive connection stays open |
| ``TOUCHPOINTS_MAX_CONNECTIONS`` | ``256`` | connections and requests in flight the HTTP API takes at once; beyond, 503 |
| ``TOUCHPOINTS_SEAL_PERSONAL_DATA`` | the log's mode; a new data folder: ``1`` (``SEAL_PERSONAL_DATA_DEFAULT``) | seal personal fields at ingestion (``events.personal``): the log keeps pseudonyms and ciphertext, keys in ``<data>/keys.db``; ``touchpoints erase`` destroys a person's keys. Fixed by the log's first append (``application.privacy.mode``): a value contradicting it stops every command that appends or reads personal data |
| ``TOUCHPOINTS_SEAL_CUSTOMER_IDS`` | the log's mode; a new data folder: ``0`` | with sealing on, customer ids are personal too (fixed by the first append, as above) |
| ``TOUCHPOINTS_VIEWS_JOURNEYS_ON_DISK`` | ``0`` | the API's live views keep each identity's journey in a SQLite file in ``<data>/views/`` (``application.journey_spill``: unlinked once open, rebuilt at each start) instead of in memory: ~2.9 KB of memory a customer instead of ~7.8, for ~15 % more API CPU an event at 100,000 customers |
| ``TOUCHPOINTS_WORKER_JOURNEYS_ON_DISK`` | ``1`` | the worker's journey processors keep each identity's journey in a SQLite file a partition in ``<data>/worker/`` (unlinked once open; restored from ``touchpoints.journeys`` on assignment, as in memory), the 10,000 most recently used decoded: the worker's memory stops growing with the population (~1.5 KB an identity in memory), for ~2–6 µs more worker CPU an event; ``0`` keeps them in memory |
| ``TOUCHPOINTS_BROKER_MEMORY_BUDGET`` | ``768`` | MiB the bundled broker may hold before ``touchpoints up`` restarts it on purpose (``streams.broker_recycle``): tansu's memory engine keeps every record it was given, and the store is the log of record, so a planned restart is its compaction. The worker hands its journeys over, the relay publishes only what they lack, unread inbound records and dead letters are carried over; the pipeline pauses for the restart, reads do not. ``0`` never restarts it; an external Kafka ignores it |
| ``TOUCHPOINTS_GIL_SWITCH_INTERVAL`` | ``0.001`` | seconds a thread of ``touchpoints up`` / ``serve`` may keep Python's GIL while another waits (``sys.setswitchinterval``; CPython's default is 0.005): reads wait less behind the views' feed and refresher (docs/DECISIONS.md, "The GIL's switch interval") |
| ``TOUCHPOINTS_API_KEY`` | empty | the key commands that call a running API send (``touchpoints verify --views --api URL``: ``read``) |
| ``TOUCHPOINTS_LOG_LEVEL`` | ``INFO`` | ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL`` |
| ``TOUCHPOINTS_EVENTSTORE_URL`` | empty | tests only: a KurrentDB server the contract suite also runs against |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, SecretStr

from application.access.keys import KEY_FORMAT_HELP, KeyFormatError, key_prefix

if TYPE_CHECKING:
    from application.privacy.policy import Sealing

PREFIX = "TOUCHPOINTS_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
KAFKA_COMPRESSIONS = ("zstd", "lz4", "gzip", "none")
STORE_SCHEMES = ("sqlite", "esdb", "esdb+discover", "kurrentdb", "kurrentdb+discover")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """An environment variable holds a value touchpoints cannot use."""

    def __init__(self, variable: str, reason: str):
        self.variable = variable
        self.reason = reason
        super().__init__(f"{variable}: {reason}")


# Whether a new data folder (an empty log, no recorded mode) seals personal data when
# TOUCHPOINTS_SEAL_PERSONAL_DATA is unset; a log with events keeps its own mode whatever this says.
# On: privacy by default. A log sealed from its first event can honour every erasure; one that
# starts unsealed never can for what it already holds (the mode cannot change later).
SEAL_PERSONAL_DATA_DEFAULT = True

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
    kafka_compression: str = "zstd"
    partitions: int = 6
    max_body_bytes: int = 16 * 1024 * 1024
    ingest_max_pending_bytes: int = 16 * 1024 * 1024
    ingest_max_queue_seconds: float = 1.0
    ingest_workers: int = DEFAULT_INGEST_WORKERS
    allowed_hosts: tuple[str, ...] = ()
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 256
    log_level: str = "INFO"
    eventstore_url: str = ""
    seal_personal_data: bool | None = None  # None: unset, decided by ``application.privacy.mode.settle``
    seal_customer_ids: bool | None = None
    admin_key: SecretStr | None = None  # never shown: repr and logs print **********
    api_key: SecretStr | None = None
    # The API's views keep each identity's journey in a file (application.journey_spill) rather than
    # in memory: ~2.9 KB a customer instead of ~7.8, for ~15 % more API CPU an event at 100k customers.
    views_journeys_on_disk: bool = False
    # With the journeys on disk, what each group contributed to the maintained views goes beside them
    # (read only when the group changes): ~300 MiB less at a million customers, for a slower catch-up.
    views_contributions_on_disk: bool = True
    broker_memory_budget_mib: int = 768
    # The worker's journey processors keep each identity's journey in a file (one a partition, in
    # <data>/worker/) rather than in memory: its memory stops growing with the population.
    worker_journeys_on_disk: bool = True
    # A worker saves its journeys at a clean stop, for a next start whose broker lost every record
    # (streams.worker_state): ``touchpoints up`` turns it on for its worker, beside its bundled broker.
    worker_saves_state: bool = False
    # How long a thread of a process serving reads keeps the GIL while another waits (CPython: 5 ms).
    gil_switch_interval: float = 0.001

    @property
    def sealing(self) -> "Sealing | None":
        """How ingestion seals personal data here (None: it does not). Only for settings settled
        against the log (``application.privacy.mode.settle``): unset, the mode is the log's."""
        if self.seal_personal_data is None:
            raise RuntimeError(
                "TOUCHPOINTS_SEAL_PERSONAL_DATA is unset: settle the settings against the log "
                "(application.privacy.mode.settle) before asking how it is sealed"
            )
        if not self.seal_personal_data:
            return None
        from application.privacy.policy import Sealing  # cryptography only where sealing is on

        return Sealing.in_folder(self.data, customer_ids=bool(self.seal_customer_ids))

    @property
    def new_logs_sealed(self) -> bool:
        """Whether an empty log with no recorded mode is sealed when TOUCHPOINTS_SEAL_PERSONAL_DATA
        is unset: ``SEAL_PERSONAL_DATA_DEFAULT``, read when asked."""
        return SEAL_PERSONAL_DATA_DEFAULT

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
            kafka_compression=reader.choice("KAFKA_COMPRESSION", "zstd", KAFKA_COMPRESSIONS),
            partitions=reader.integer("PARTITIONS", 6, low=1, high=10_000),
            max_body_bytes=reader.integer("MAX_BODY_BYTES", 16 * 1024 * 1024, low=1),
            ingest_max_pending_bytes=reader.integer("INGEST_MAX_PENDING_BYTES", 16 * 1024 * 1024, low=1),
            ingest_max_queue_seconds=reader.seconds("INGEST_MAX_QUEUE_SECONDS", 1.0),
            ingest_workers=reader.integer("INGEST_WORKERS", DEFAULT_INGEST_WORKERS, low=0, high=64),
            allowed_hosts=reader.names("ALLOWED_HOSTS"),
            header_timeout=reader.seconds("HEADER_TIMEOUT", 10.0),
            body_timeout=reader.seconds("BODY_TIMEOUT", 30.0),
            keep_alive_timeout=reader.seconds("KEEP_ALIVE_TIMEOUT", 5.0),
            max_connections=reader.integer("MAX_CONNECTIONS", 256, low=1),
            log_level=reader.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
            eventstore_url=reader.raw("EVENTSTORE_URL"),
            seal_personal_data=reader.optional_boolean("SEAL_PERSONAL_DATA"),
            seal_customer_ids=reader.optional_boolean("SEAL_CUSTOMER_IDS"),
            admin_key=reader.api_key("ADMIN_KEY"),
            api_key=reader.api_key("API_KEY"),
            views_journeys_on_disk=reader.boolean("VIEWS_JOURNEYS_ON_DISK", False),
            views_contributions_on_disk=reader.boolean("VIEWS_CONTRIBUTIONS_ON_DISK", True),
            broker_memory_budget_mib=reader.integer("BROKER_MEMORY_BUDGET", 768, low=0),
            worker_journeys_on_disk=reader.boolean("WORKER_JOURNEYS_ON_DISK", True),
            worker_saves_state=reader.boolean("WORKER_SAVES_STATE", False),
            gil_switch_interval=reader.seconds("GIL_SWITCH_INTERVAL", 0.001),
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

    def seconds(self, name: str, default: float) -> float:
        value = self.raw(name)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(PREFIX + name, f"expected a number of seconds, got {value!r}") from None
        if not 0 < number <= 86_400:
            raise SettingsError(PREFIX + name, f"must be more than 0 and at most 86400 seconds, got {value!r}")
        return number

    def names(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        names = tuple(part.strip().lower() for part in value.split(",") if part.strip())
        for entry in names:
            if entry != "*" and (any(c.isspace() or c in "/@?#" for c in entry)):
                raise SettingsError(PREFIX + name, f"expected host names (name or name:port) or *, got {entry!r}")
        return names

    def boolean(self, name: str, default: bool) -> bool:
        value = self.optional_boolean(name)
        return default if value is None else value

    def optional_boolean(self, name: str) -> bool | None:
        """None when unset: the caller decides (a log's recorded sealing mode)."""
        value = self.raw(name).lower()
        if not value:
            return None
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise SettingsError(PREFIX + name, f"expected 1/0, true/false, yes/no or on/off, got {value!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of ``choices``, whatever the case it was written in."""
        value = self.raw(name)
        if not value:
            return default
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise SettingsError(PREFIX + name, f"expected one of {', '.join(choices)}, got {value!r}")

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

    def api_key(self, name: str) -> SecretStr | None:
        value = self.raw(name)
        if not value:
            return None
        try:
            key_prefix(value)
        except KeyFormatError:  # the message must not repeat the value: it is a secret
            raise SettingsError(PREFIX + name, f"not an API key: expected {KEY_FORMAT_HELP}") from None
        return SecretStr(value)

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
