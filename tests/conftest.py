"""Shared fixtures.

``store``: a real SQLite store in the test's temp folder. ``make_event`` (``wire_event``):
a valid wire-format event, keyword arguments overriding or adding fields. ``settings``
pointing at the same temp folder; ``api``: the HTTP API over ``store`` (in-process
client, sending ``auth_headers``); ``serve_app``: ``with serve_app(app) as url:`` runs an
app on a real uvicorn server; ``demo_store_path``: a demo store file built once per session
(read it only).

Access control: every route but ``/healthz`` and ``/login`` needs a key. ``admin_key`` is
an admin key (admin implies every scope) in ``settings.data``'s ``access.db``, which
``create_app`` opens by default; ``auth_headers`` is ``{"Authorization": "Bearer <it>"}``;
``make_key(data, "read", ...)`` makes a key of other scopes (or narrowed) in a data folder,
``admin_headers(data)`` the headers of a new admin key there.

``kafka_broker``: ONE bundled tansu broker for the whole test session, on a free
loopback port. It yields the ``streams.broker.BundledBroker`` itself:
``.bootstrap`` (``"127.0.0.1:PORT"``), ``.restart()`` (kill + start on the same
port; everything in it is lost), ``.stop()``. A test that stops it need not
start it again: the broker is brought back before the next test.

Topics are shared by every test in the session: use unique topic names or
consumer groups per test (``unique_name``), or read from offsets you recorded.

``read_topic(bootstrap, topic, *, until=None, timeout=30.0, idle=0.5)``: every record
of a topic from offset 0 of each partition (no consumer group), read until
``until(records)`` is true and nothing new arrived for ``idle`` seconds. Do not
stop at the partitions' end offsets: tansu 0.6 reports the last batch's base
offset + 1 as a partition's end, not the offset after its last record.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from application.settings import Settings
from events.sqlite.store import SQLiteEventStore
from streams.broker import BundledBroker, free_port

__all__ = ["free_port"]

_session_broker: BundledBroker | None = None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteEventStore]:
    opened = SQLiteEventStore(tmp_path / "events.db")
    yield opened
    opened.close()


def wire_event(type: str = "page_viewed", **fields: Any) -> dict[str, Any]:
    """A valid wire-format event; keyword arguments override or add fields (None removes one)."""
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": type,
        "occurred_at": "2024-03-01T12:00:00Z",
        "anonymous_id": f"cookie:{uuid.uuid4().hex[:16]}",
        "channel": "direct",
    }
    if type == "order_placed":
        event.update(customer_id="c-1", data={"order_id": "o-1", "revenue": "19.90", "currency": "EUR"})
        event.pop("anonymous_id")
        event.pop("channel")
    event.update(fields)
    return {key: value for key, value in event.items() if value is not None}


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    return wire_event


def stored_stream(data: Path, stream: str) -> str:
    """The name a plaintext identity ``stream`` (``anonymous-cookie:1``) has in the log of the
    data folder ``data``: its pseudonymous form where that log seals personal data (the
    default for a new folder), else itself."""
    from application.privacy.mode import recorded_mode
    from application.privacy.policy import Sealing
    from application.privacy.pseudonyms import ANONYMOUS, ANONYMOUS_STREAM, CUSTOMER, CUSTOMER_STREAM, pseudonym

    mode = recorded_mode(data)
    if mode is None or not mode.sealed:
        return stream
    pepper = Sealing.in_folder(data, customer_ids=mode.customer_ids).keys().pepper()
    if stream.startswith(ANONYMOUS_STREAM):
        return ANONYMOUS_STREAM + pseudonym(pepper, ANONYMOUS, stream[len(ANONYMOUS_STREAM):])
    if stream.startswith(CUSTOMER_STREAM) and mode.customer_ids:
        return CUSTOMER_STREAM + pseudonym(pepper, CUSTOMER, stream[len(CUSTOMER_STREAM):])
    return stream


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO": "0"})


def make_key(data: Path, *scopes: str, name: str = "test", source: str | None = None,
             types: frozenset[str] | None = None) -> str:
    """A new key of ``scopes`` in the data folder's access store (what ``touchpoints keys create`` does)."""
    from application.access import open_access, parse_scopes

    access = open_access(data)
    try:
        return access.create_key(name=name, scopes=parse_scopes(list(scopes)), source=source, types=types)[0]
    finally:
        access.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin_headers(data: Path) -> dict[str, str]:
    """Headers carrying a new admin key of the data folder."""
    return bearer(make_key(data, "admin", name="test admin"))


@pytest.fixture
def admin_key(settings: Settings) -> str:
    return make_key(settings.data, "admin", name="test admin")


@pytest.fixture
def auth_headers(admin_key: str) -> dict[str, str]:
    return bearer(admin_key)


@pytest.fixture
def api(store: SQLiteEventStore, settings: Settings, auth_headers: dict[str, str]) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from consumers.api.app import create_app

    with TestClient(create_app(store=store, settings=settings), headers=auth_headers) as client:
        yield client


@contextmanager
def running_server(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """A real uvicorn server for ``app`` in a thread, on a free port; yields its base URL."""
    from consumers.api.server import base_url, bind_socket, make_server

    sock = bind_socket(host, 0)
    server = make_server(app, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def serve_app() -> Callable[..., Any]:
    """``with serve_app(app) as url:`` runs ``app`` on a real uvicorn server."""
    return running_server


@pytest.fixture(scope="session")
def demo_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store file holding the demo data set (300 customers, default seed), built
    once per session. Read it only: copy the file (``shutil.copy``) to write to it."""
    from application.demo import load_demo_if_empty

    folder = tmp_path_factory.mktemp("demo_store")
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(folder), "TOUCHPOINTS_DEMO_CUSTOMERS": "300"})
    with SQLiteEventStore(folder / "events.db") as demo:
        load_demo_if_empty(demo, settings)
    return folder / "events.db"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundledBroker]:
    global _session_broker
    broker = BundledBroker(data_dir=tmp_path_factory.mktemp("kafka_broker"))
    broker.start()
    _session_broker = broker
    try:
        yield broker
    finally:
        _session_broker = None
        broker.close()


@pytest.fixture(autouse=True)
def _session_broker_running() -> Iterator[None]:
    """Bring the session broker back if a test stopped it (same port, empty)."""
    yield
    if _session_broker is not None and not _session_broker.running:
        _session_broker.start()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, for topics and consumer groups."""
    safe = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:40]
    return f"t-{safe}-{uuid.uuid4().hex[:8]}"


def read_topic_records(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list], bool] | None = None,
    timeout: float = 30.0,
    idle: float = 0.5,
) -> list:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="test-read-topic")
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.1)
        if not partitions:
            return []
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list = []
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=100)
            fresh = [record for batch in polled.values() for record in batch]
            if fresh:
                records.extend(fresh)
                last_new = time.monotonic()
            elif time.monotonic() - last_new >= idle and (until is None or until(records)):
                break
        return records
    finally:
        consumer.close()


@pytest.fixture
def read_topic() -> Callable[..., list]:
    return read_topic_records
