"""bench/restart: from a restarted API process to correct views, with and without saved documents.

``touchpoints serve`` (views folded straight from the store) runs as a user runs it, on a
SQLite store of ``scale`` x 100,000 demo customers (the store ``bench/views`` builds,
cached). The clock starts when the process is spawned; a client polls every 20 ms:

- the first correct default document: ``/v1/funnel`` answering the bytes the live views
  computed at the store's head, with ``X-Touchpoints-Position`` = the head;
- the live views taking over: ``/healthz``'s views component ``ok`` (the population
  rebuilt, every default document computed from it).

Runs alternate in one process: cold (no saved documents: the baseline, what every
restart cost before), warm (the documents the previous run saved on SIGTERM). Nothing
is appended between runs, so a warm run's restored documents are the views at the
head. Target (issue 14): a restart serves correct views within 10 s.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import Row
from bench.http_load import BENCH_HEADERS, bench_env

FULL_CUSTOMERS = 100_000
ROUNDS = 2
POLL = 0.02
TIMEOUT = 600.0
TARGET_SECONDS = 10.0


def log(message: str) -> None:
    print(f"  [restart] {message}", file=sys.stderr, flush=True)


def run(scale: float) -> list[Row]:
    from application.view_documents import documents_path
    from bench.views import SEED, cache_dir, ensure_store
    from streams.broker import free_port

    customers = max(1000, int(FULL_CUSTOMERS * scale))
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / f"views-{customers}-{SEED}.db"
    ensure_store(store, customers)
    data = Path(tempfile.mkdtemp(prefix="touchpoints-bench-restart-"))
    saved = documents_path(data)

    reference = None  # the funnel the live views serve at the head
    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    try:
        for index in range(ROUNDS * 2 + 1):
            kind = "cold" if index % 2 == 0 else "warm"
            if kind == "cold":
                saved.unlink(missing_ok=True)
            first, live, reference = start_and_time(store, data, free_port(), reference)
            if index == 0:
                continue  # a first run warms the page cache and finds the reference document
            (cold if kind == "cold" else warm).append((first, live))
            log(f"{kind}: first correct default document {first:.2f} s, live views took over {live:.2f} s")
    finally:
        shutil.rmtree(data, ignore_errors=True)

    cold_first = min(first for first, _ in cold)
    rows = [
        Row("restart", f"cold start: first correct default document ({customers:,} customers)",
            cold_first, "s"),
        Row("restart", "saved documents: first correct default document",
            min(first for first, _ in warm), "s", "cold start", cold_first, f"< {TARGET_SECONDS:.0f} s",
            max(first for first, _ in warm) < TARGET_SECONDS),
        Row("restart", "saved documents: the live views take over", min(live for _, live in warm), "s",
            "cold start", min(live for _, live in cold)),
    ]
    for kind, runs in (("cold", cold), ("warm", warm)):
        log(f"{kind} runs (first correct, take over), s: " + ", ".join(f"({a:.2f}, {b:.2f})" for a, b in runs))
    return rows


def start_and_time(store: Path, data: Path, port: int, reference: bytes | None) -> tuple[float, float, bytes]:
    """Spawn ``touchpoints serve``; seconds to the first correct funnel and to the live views'
    take-over, and the funnel they serve then. SIGTERM after (the documents are saved)."""
    from events.sqlite.store import SQLiteEventStore

    with SQLiteEventStore(store) as opened:
        head = opened.head_position()
    env = bench_env(TOUCHPOINTS_DATA=str(data), TOUCHPOINTS_DEMO="0", TOUCHPOINTS_LOG_LEVEL="WARNING")
    argv = [sys.executable, "-m", "consumers.cli.main", "serve", "--store", f"sqlite:///{store}",
            "--port", str(port), "--no-demo"]
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = live = None
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=BENCH_HEADERS) as client:
            while live is None:
                if time.perf_counter() - started > TIMEOUT:
                    raise RuntimeError(f"touchpoints serve did not serve the live views within {TIMEOUT:.0f} s")
                try:
                    funnel = client.get("/v1/funnel")
                    views = client.get("/healthz").json()["components"]["views"]
                except httpx.TransportError:
                    time.sleep(POLL)
                    continue
                now = time.perf_counter() - started
                at_head = funnel.status_code == 200 and funnel.headers.get("X-Touchpoints-Position") == str(head)
                if first is None and at_head and reference is not None and funnel.content == reference:
                    first = now
                if views["status"] == "ok":
                    live = now
                    if reference is None:  # the first run: what the live views serve at the head
                        reference = client.get("/v1/funnel").content
                    first = first if first is not None else now
                time.sleep(POLL)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return first, live, reference
