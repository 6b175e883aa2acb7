"""A real API over SQLite whose writer can be held up, for the admission and emitter tests."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from application.access import Scope
from application.access.service import open_access
from application.settings import Settings
from consumers.api.admission import IngestAdmission
from consumers.api.app import create_app
from events.sqlite.store import SQLiteEventStore
from tests.conftest import running_server, wire_event


def settings_for(folder: Path, max_pending_bytes: int) -> Settings:
    return Settings(data=folder, store_url=f"sqlite:///{folder / 'events.db'}", demo=False,
                    ingest_workers=0, ingest_max_pending_bytes=max_pending_bytes)


@contextmanager
def writer_held_up(path: Path) -> Iterator[None]:
    """Another connection holds the write lock: appends wait (busy_timeout) until it lets go."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def body_of(count: int) -> bytes:
    return orjson.dumps([wire_event() for _ in range(count)])


def post_in_background(server: "Server", body: bytes, answers: list[httpx.Response]) -> threading.Thread:
    def post() -> None:
        answers.append(httpx.post(f"{server.url}/v1/events", content=body, headers=server.json_headers, timeout=30))

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def wait_for_pending(admission: IngestAdmission, requests: int) -> None:
    deadline = time.monotonic() + 10
    while admission.pending_requests < requests:
        assert time.monotonic() < deadline, f"{requests} request(s) never became pending: {admission.stats()}"
        time.sleep(0.01)


@dataclass
class Server:
    url: str
    store: SQLiteEventStore
    admission: IngestAdmission
    key: str  # with the emit scope

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}

    @property
    def json_headers(self) -> dict[str, str]:
        return {**self.auth, "content-type": "application/json"}

    def post(self, body: bytes) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/events", content=body, headers=self.json_headers, timeout=30)


@contextmanager
def app_server(folder: Path, max_pending_bytes: int, *, busy_timeout: float = 20) -> Iterator[Server]:
    """The API over the folder's store on a real uvicorn server, with an emit key."""
    store = SQLiteEventStore(folder / "events.db", busy_timeout=busy_timeout)
    settings = settings_for(folder, max_pending_bytes)
    access = open_access(settings.data)
    key, _ = access.create_key(name="emitter", scopes=frozenset({Scope.EMIT}))
    app = create_app(store=store, settings=settings, access=access)
    try:
        with running_server(app) as url:
            yield Server(url, store, app.state.admission, key)
    finally:
        access.close()
        store.close()
