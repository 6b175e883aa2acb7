"""The tracking API beside the native ingest, in the same run: ``POST /v1/batch`` (Segment
messages) against ``POST /v1/events`` (the same events in our wire form).

At scale 1.0, 25,000 journeys of four Segment messages each (a page with utm parameters and a
referrer, a track of an unmapped name, an identify linking the ids, an Order Completed):
100,000 messages. The native baseline posts exactly the events the tracking mapping makes of
them (``application.tracking.to_event``), so both store the same rows. A real uvicorn server
in a subprocess per round on a fresh database (with an emit key), 4 concurrent clients,
requests of 500 messages or events (a Segment batch of this size is ~190 KB, under the
500 KB limit). The two paths alternate for three rounds; rows show the median and the range,
events/s and the server's CPU per event (server + decoding workers).

``python -m bench tracking`` runs it; ``python -m bench.tracking server DB DATA`` is the
server subprocess.
"""

from __future__ import annotations

import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson

from application.tracking import TrackingConfig, to_event
from bench.common import Row
from bench.http_load import post_concurrently

FULL_JOURNEYS = 25_000
BATCH = 500
CLIENTS = 4
ROUNDS = 3
ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def journeys(count: int) -> list[dict[str, Any]]:
    """Segment messages as an SDK sends them: four per journey."""
    messages = []
    for n in range(count):
        anonymous, user = f"anon-{n:07d}", f"cust-{n:07d}"
        at = START + timedelta(minutes=n)
        common = {"anonymousId": anonymous, "context": {"library": {"name": "analytics.js", "version": "1"}}}
        messages += [
            {**common, "type": "page", "messageId": f"m-{n}-p", "timestamp": at.isoformat(), "name": "Landing",
             "context": {**common["context"], "page": {
                 "url": f"https://shop.example/p/{n % 50}?utm_source=newsletter&utm_medium=email&utm_campaign=c{n % 7}",
                 "referrer": "https://mail.example.org/", "title": "Landing"}}},
            {**common, "type": "track", "messageId": f"m-{n}-t", "timestamp": (at + timedelta(seconds=30)).isoformat(),
             "event": "Product Viewed", "properties": {"sku": f"sku-{n % 300}", "price": 19.9}},
            {**common, "type": "identify", "messageId": f"m-{n}-i", "userId": user,
             "timestamp": (at + timedelta(seconds=60)).isoformat(), "traits": {"plan": "free"}},
            {**common, "type": "track", "messageId": f"m-{n}-o", "userId": user,
             "timestamp": (at + timedelta(seconds=90)).isoformat(), "event": "Order Completed",
             "properties": {"order_id": f"o-{n}", "revenue": 42.5, "currency": "EUR"}},
        ]
    return messages


def run(scale: float) -> list[Row]:
    messages = journeys(max(250, int(FULL_JOURNEYS * scale)))
    received = datetime.now(timezone.utc)
    events = [to_event(message, received_at=received, config=TrackingConfig()) for message in messages]
    batches = [orjson.dumps({"batch": messages[i : i + BATCH]}) for i in range(0, len(messages), BATCH)]
    arrays = [orjson.dumps(events[i : i + BATCH]) for i in range(0, len(events), BATCH)]
    results: dict[str, list[tuple[float, float]]] = {"events": [], "batch": []}
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as folder:
        for round_ in range(ROUNDS):
            for name, path, bodies in (("events", "/v1/events", arrays), ("batch", "/v1/batch", batches)):
                results[name].append(_measure(Path(folder) / f"{name}-{round_}", path, bodies, len(events)))
    rate = {name: statistics.median(r for r, _ in found) for name, found in results.items()}
    cpu = {name: statistics.median(c for _, c in found) for name, found in results.items()}
    spread = {name: f"{min(r for r, _ in f):,.0f}-{max(r for r, _ in f):,.0f}" for name, f in results.items()}
    native = f"POST /v1/events ({CLIENTS} clients x {BATCH}-event arrays)"
    return [
        Row("tracking", f"{native}, {len(events):,} events, rounds {spread['events']}", rate["events"], "events/s"),
        Row("tracking", f"POST /v1/batch ({CLIENTS} clients x {BATCH}-message batches), rounds {spread['batch']}",
            rate["batch"], "events/s", "POST /v1/events", rate["events"]),
        Row("tracking", "POST /v1/events server CPU per event (server + decoding workers)", cpu["events"], "us/event"),
        Row("tracking", "POST /v1/batch server CPU per event (server + decoding workers)", cpu["batch"], "us/event",
            "POST /v1/events", cpu["events"]),
    ]


def _measure(folder: Path, path: str, bodies: list[bytes], count: int) -> tuple[float, float]:
    """(events/s, server CPU µs per event) of posting ``bodies`` to ``path`` on a fresh server."""
    folder.mkdir(parents=True)
    server = subprocess.Popen([sys.executable, "-m", "bench.tracking", "server", str(folder / "events.db"),
                               str(folder)], stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        url, key = (server.stdout.readline().strip() for _ in range(2))  # type: ignore[union-attr]
        if not url.startswith("http"):
            raise RuntimeError(f"the bench server did not start: {url!r}")
        started, cpu_started = time.perf_counter(), _tree_cpu_seconds(server.pid)
        _post_concurrently(url, path, bodies, key)
        elapsed, cpu = time.perf_counter() - started, _tree_cpu_seconds(server.pid) - cpu_started
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
            stored = client.get("/v1/events", params={"from_position": 0, "limit": 1}).json()
        if not stored.get("events"):
            raise RuntimeError(f"nothing was stored through {path}")
    finally:
        server.terminate()
        server.wait(30)
    return count / elapsed, cpu / count * 1e6


def _post_concurrently(url: str, path: str, bodies: list[bytes], key: str) -> None:
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()  # as the Segment SDKs send a write key
    post_concurrently(url, bodies, clients=CLIENTS, path=path, headers={"authorization": auth})


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (the server's decoding workers)."""
    total = _cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += _cpu_seconds(int(child))
        except OSError:
            pass  # it just exited
    return total


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_main(database: str, data: str) -> None:
    from application.access import Scope, open_access
    from application.settings import Settings
    from consumers.api.app import create_app
    from consumers.api.server import base_url, bind_socket, make_server, tune_gc_for_throughput
    from events.sqlite.store import SQLiteEventStore

    settings = Settings.from_env({"TOUCHPOINTS_DEMO": "0", "TOUCHPOINTS_DATA": data})
    access = open_access(data)
    key, _ = access.create_key(name="bench", scopes=frozenset({Scope.EMIT, Scope.AUDIT}))
    with SQLiteEventStore(database) as store:
        sock = bind_socket("127.0.0.1", 0)
        app = create_app(store=store, settings=settings, access=access)
        server = make_server(app, log_level="warning")
        app.state.body_decoder.start()  # as `touchpoints serve` does
        tune_gc_for_throughput()
        print(base_url(sock), flush=True)
        print(key, flush=True)
        server.run(sockets=[sock])


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command != "server":
        sys.exit(f"unknown command {command!r}: expected server")
    server_main(*arguments)
