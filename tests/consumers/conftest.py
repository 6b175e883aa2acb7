"""Shared consumer fixtures: a real SQLite store in a temp folder, settings pointing at it,
the API over it (in-process client, or a real uvicorn server), and valid wire events."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consumers.api.app import create_app
from consumers.api.server import base_url, bind_socket, make_server
from application.settings import Settings
from events.sqlite.store import SQLiteEventStore


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_DEMO": "0"})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteEventStore]:
    opened = SQLiteEventStore(tmp_path / "events.db")
    yield opened
    opened.close()


@pytest.fixture
def api(store: SQLiteEventStore, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(store=store, settings=settings)) as client:
        yield client


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


@contextmanager
def running_server(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """A real uvicorn server for ``app`` in a thread, on a free port; yields its base URL."""
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
