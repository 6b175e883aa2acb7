"""bench/restart: from a restarted API process to correct views: cold, with saved
documents, with the views' saved state.

``touchpoints serve`` (views folded straight from the store) runs as a user runs it, on a
SQLite store of ``scale`` x 100,000 demo customers (the store ``bench/views`` builds,
cached). The clock starts when the process is spawned; a client polls every 20 ms:

- the first correct default document: ``/v1/funnel`` answering the bytes the live views
  computed at the store's head, with ``X-Touchpoints-Position`` = the head;
- the live views taking over: ``/healthz``'s views component ``ok`` (the population
  rebuilt or taken up, every default document computed from it): from then on every query
  is answered (timelines, other parameters), and new events are folded.

Runs rotate in one process: cold (no saved documents, no state: the baseline, what every
restart cost before), documents (the default documents the previous run saved on SIGTERM,
no state: what a killed process leaves), state (both: what a clean stop leaves). Each run
ends with SIGTERM, timed to the process's exit (the state is saved then). Nothing is
appended between runs, so restored documents and states are the views at the head.
Target (issue 14): a restart serves correct views within 10 s.
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
STOP_TIMEOUT = 300.0
TARGET_SECONDS = 10.0
KINDS = ("cold", "documents", "state")


def log(message: str) -> None:
    print(f"  [restart] {message}", file=sys.stderr, flush=True)


def run(scale: float) -> list[Row]:
    from application import view_state
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
    runs: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in KINDS}
    try:
        for index in range(ROUNDS * len(KINDS) + 1):
            kind = KINDS[(index - 1) % len(KINDS)] if index else "cold"
            if kind != "state":
                view_state.discard(view_state.state_folder(data))
            if kind == "cold":
                saved.unlink(missing_ok=True)
            first, live, stop, reference = start_and_time(store, data, free_port(), reference)
            if index == 0:
                continue  # a first run warms the page cache and finds the reference document
            runs[kind].append((first, live, stop))
            log(f"{kind}: first correct default document {first:.2f} s, live views {live:.2f} s, stop {stop:.2f} s")
    finally:
        shutil.rmtree(data, ignore_errors=True)

    cold_first = min(first for first, _, _ in runs["cold"])
    cold_live = min(live for _, live, _ in runs["cold"])
    rows = [Row("restart", f"cold start: first correct default document ({customers:,} customers)", cold_first, "s"),
            Row("restart", "cold start: the live views serve", cold_live, "s")]
    for kind, label in (("documents", "saved documents"), ("state", "saved state")):
        rows += [
            Row("restart", f"{label}: first correct default document", min(first for first, _, _ in runs[kind]), "s",
                "cold start", cold_first, f"< {TARGET_SECONDS:.0f} s",
                max(first for first, _, _ in runs[kind]) < TARGET_SECONDS),
            Row("restart", f"{label}: the live views serve (every query)", min(live for _, live, _ in runs[kind]),
                "s", "cold start", cold_live, f"< {TARGET_SECONDS:.0f} s",
                max(live for _, live, _ in runs[kind]) < TARGET_SECONDS),
        ]
    rows.append(Row("restart", "SIGTERM to exit (documents and state saved), the longest",
                    max(stop for timed in runs.values() for _, _, stop in timed), "s"))
    for kind, timed in runs.items():
        log(f"{kind} runs (first correct, live, stop), s: " + ", ".join(f"({a:.2f}, {b:.2f}, {c:.2f})"
                                                                       for a, b, c in timed))
    return rows


def start_and_time(store: Path, data: Path, port: int, reference: bytes | None) -> tuple[float, float, float, bytes]:
    """Spawn ``touchpoints serve``; seconds to the first correct funnel, to the live views'
    take-over and from SIGTERM to its exit (the documents and the state are saved), and the
    funnel the live views serve."""
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
        stopping = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.wait(STOP_TIMEOUT)
    return first, live, time.perf_counter() - stopping, reference
