"""The benches' HTTP load generator (bench/ingest, bench/pipeline): events as JSON arrays,
POSTed to ``/v1/events`` by a few concurrent clients, each sending the next array as soon
as its previous one was answered.

The generator shares the machine's cores with the server it measures, so it only joins
bytes already encoded and reads one field of each answer.

Access: a bench gives every server it starts ``BENCH_ADMIN_KEY`` as its admin key
(``bench_env()`` sets ``TOUCHPOINTS_ADMIN_KEY`` for ``touchpoints up`` and the benches' own
server processes, which call ``bench_access``) and its clients send ``BENCH_HEADERS``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from application.access.keys import new_key

BENCH_ADMIN_KEY = new_key()
BENCH_HEADERS = {"authorization": f"Bearer {BENCH_ADMIN_KEY}"}


def bench_env(**variables: str) -> dict[str, str]:
    """The environment of a server process a bench starts: its admin key is ``BENCH_ADMIN_KEY``."""
    return {**os.environ, "TOUCHPOINTS_ADMIN_KEY": BENCH_ADMIN_KEY, **variables}


def bench_access(data: Path) -> Any:
    """In a bench's server process: the access store of ``data`` (a fresh folder), whose admin
    key is the one the bench passed in ``TOUCHPOINTS_ADMIN_KEY``."""
    from application.access import open_access

    access = open_access(data)
    access.ensure_admin_key(os.environ["TOUCHPOINTS_ADMIN_KEY"])
    return access


def json_arrays(lines: list[bytes], size: int) -> list[bytes]:
    """Wire-JSON events, one ``bytes`` each, joined into JSON arrays of ``size`` events."""
    return [b"[" + b",".join(lines[i : i + size]) + b"]" for i in range(0, len(lines), size)]


def post_concurrently(url: str, bodies: list[bytes], *, clients: int, path: str = "/v1/events",
                      headers: dict[str, str] | None = None) -> int:
    """POST every body once to ``path``, ``clients`` connections at a time, with ``headers``
    (the bench admin key's by default); the events accepted, as the answers count them (the
    Segment routes' answers count none). Raises ``RuntimeError`` if the server answered any
    body with something other than 200."""
    pending: Iterator[bytes] = iter(bodies)
    lock = threading.Lock()
    totals: list[int] = []
    errors: list[str] = []

    def client_loop() -> None:
        accepted = 0
        sent = {"content-type": "application/json", **(BENCH_HEADERS if headers is None else headers)}
        with httpx.Client(base_url=url, timeout=120, headers=sent) as client:
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    break
                response = client.post(path, content=body)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                    return
                accepted += orjson.loads(response.content).get("accepted", 0)
        totals.append(accepted)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"the server refused a request to {path}: {errors[0]}")
    return sum(totals)
