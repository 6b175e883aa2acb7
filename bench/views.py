"""bench/views: read-API latency with 1,000,000 customers' worth of events loaded.

Setup (scale 1.0 = 1,000,000 demo customers, ~10.5M events):

- the events are appended to a SQLite store (the timeline reads its member streams from
  it), cached under ``$TOUCHPOINTS_BENCH_CACHE`` (default ``/tmp/touchpoints-bench``)
  keyed by customers and seed, so reruns skip it;
- a real uvicorn server runs in a subprocess; it builds the population directly with the
  pure fold from the demo generator (validated through the registry; not through the
  store: that path is not what is measured), cached there as a journeys snapshot, then
  precomputes every default view before it listens.

Measured over HTTP with 16 keep-alive connections (a minimal asyncio HTTP/1.1 client, so
the client's own cost stays small): for each endpoint, an open-loop Poisson load of
``OFFERED_RATE`` requests/s spread over the 16 connections, latency taken from each
request's *scheduled* send time (a slow answer delays the next request on its connection
and that wait is counted, i.e. no coordinated omission), p50 and p99; beside the same
figures for a trivial endpoint of the same server (``GET /v1/views/status``) in the same
run; three such windows per endpoint, interleaved, and the median of each figure.
Every URL is requested once before it is measured (the 2,000 sampled customers'
timelines included, so their SQLite pages are in the OS cache as in a server that has been
running). Then a few endpoints' saturation throughput (16 connections back to back).

Targets: timeline p99 < 10 ms; every precomputed view p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import Row
from bench.http_load import BENCH_HEADERS, bench_access, bench_env

AUTHORIZATION = BENCH_HEADERS["authorization"]

FULL_CUSTOMERS = 1_000_000
SEED = 11
CONNECTIONS = 16
OFFERED_RATE = 200.0  # requests/s over all connections
REPEATS = 3
TIMELINE_P99_MS = 10.0
VIEW_P99_MS = 50.0
STORE_BATCH = 20_000
FOLD_BATCH = 10_000
RECORDED_AT = datetime(2025, 1, 2, tzinfo=timezone.utc)
MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based", "markov", "shapley")
PRECOMPUTED = {
    "first-contact": "/v1/first-contact",
    "first-contact by campaign": "/v1/first-contact?group_by=campaign",
    "conversion-time": "/v1/conversion-time",
    "paths": "/v1/paths",
    "customers/top": "/v1/customers/top",
    "prospects": "/v1/prospects",
    "funnel": "/v1/funnel",
    "data-quality": "/v1/data-quality",
}
TRIVIAL = "/v1/views/status"


def cache_dir() -> Path:
    return Path(os.environ.get("TOUCHPOINTS_BENCH_CACHE", "/tmp/touchpoints-bench"))


def population_snapshot(customers: int, seed: int) -> Path:
    """Where the journeys of ``customers`` demo customers are cached for bench/maintained and
    bench/memory (``build_views`` makes the file when it is missing)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    return cache_dir() / f"maintained-{customers}-{seed}.journeys"


def log(message: str) -> None:
    print(f"  [views] {message}", file=sys.stderr, flush=True)


# --- the benchmark ------------------------------------------------------------------------


def run(scale: float) -> list[Row]:
    customers = max(2_000, round(FULL_CUSTOMERS * scale))
    duration = 2.0 + 2.0 * min(scale, 1.0)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    store_path = folder / f"views-{customers}-{SEED}.db"
    snapshot = folder / f"views-{customers}-{SEED}.journeys"
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.views", "--serve", "--customers", str(customers), "--seed", str(SEED),
         "--store", str(store_path), "--snapshot", str(snapshot)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent, env=bench_env(),
    )
    try:
        ensure_store(store_path, customers)  # in parallel with the server's own fold
        ready = json.loads(server.stdout.readline() or "{}")  # type: ignore[union-attr]
        if "url" not in ready:
            raise RuntimeError(f"the bench server did not start (exit {server.poll()})")
        host, port = ready["url"].removeprefix("http://").split(":")
        ids = sample_customer_ids(store_path, 2_000)
        rows = measure_all(host, int(port), ids, duration)
        rss = server_rss_mib(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    setup = [
        Row("views", "customers loaded", customers, "customers"),
        Row("views", "events folded", ready["events"], "events"),
        Row("views", f"population build ({ready['built_from']})", ready["build_seconds"], "s"),
        Row("views", "precompute every default view", ready["precompute_seconds"], "s"),
        Row("views", "server RSS with the population", rss, "MiB"),
    ]
    return setup + rows


def measure_all(host: str, port: int, ids: list[str], duration: float) -> list[Row]:
    """Every target measured ``REPEATS`` times, interleaved with the trivial endpoint; each
    figure is the median over the repeats (other processes on a shared machine cause
    transient spikes that one window would report as the endpoint's p99)."""
    targets: list[tuple[str, list[str], float | None]] = [
        ("timeline", [f"/v1/customers/{i}/timeline" for i in ids], TIMELINE_P99_MS),
        *((f"attribution {m}", [f"/v1/attribution?model={m}"], VIEW_P99_MS) for m in MODELS),
        *((name, [path], VIEW_P99_MS) for name, path in PRECOMPUTED.items()),
    ]
    for _, paths, _ in [("warm-up", [TRIVIAL], None), *targets]:  # every URL once, unmeasured
        asyncio.run(warm(host, port, paths * max(1, 200 // len(paths))))
    runs: dict[str, list[LoadResult]] = {name: [] for name in ["trivial", *(t[0] for t in targets)]}
    for _ in range(REPEATS):
        runs["trivial"].append(asyncio.run(load(host, port, [TRIVIAL], rate=OFFERED_RATE, duration=duration)))
        for name, paths, _ in targets:
            runs[name].append(asyncio.run(load(host, port, paths, rate=OFFERED_RATE, duration=duration)))
    trivial50, trivial99 = _median(runs["trivial"], 50), _median(runs["trivial"], 99)
    load_note = f"{OFFERED_RATE:.0f} req/s, 16 conn, median of {REPEATS}"
    rows = [
        Row("views", f"trivial endpoint p50 ({load_note})", trivial50, "ms"),
        Row("views", f"trivial endpoint p99 ({load_note})", trivial99, "ms"),
    ]
    for name, _, target in targets:
        errors = sum(result.errors for result in runs[name])
        p50, p99 = _median(runs[name], 50), _median(runs[name], 99)
        ok = errors == 0 and p99 < target if target is not None else None
        rows.append(Row("views", f"{name} p50", p50, "ms", "trivial p50", trivial50))
        rows.append(Row("views", f"{name} p99" + (f" ({errors} errors)" if errors else ""),
                        p99, "ms", "trivial p99", trivial99, f"< {target:.0f} ms", ok))
    saturation = [("trivial endpoint", [TRIVIAL])] + [(t[0], t[1]) for t in targets
                                                      if t[0] in ("timeline", "attribution markov", "first-contact")]
    measured = [(name, asyncio.run(load(host, port, paths, rate=None, duration=duration / 2)).throughput)
                for name, paths in saturation]
    base = measured[0][1]
    for name, throughput in measured:
        first = name == "trivial endpoint"
        rows.append(Row("views", f"{name} saturation throughput (16 conn)", throughput, "req/s",
                        "" if first else "trivial endpoint", None if first else base))
    return rows


def _median(results: list["LoadResult"], q: float) -> float:
    return statistics.median(result.p(q) for result in results)


class LoadResult:
    def __init__(self, latencies: list[float], errors: int, elapsed: float):
        self.latencies = sorted(latencies)
        self.errors = errors
        self.throughput = len(latencies) / elapsed if elapsed else 0.0

    def p(self, q: float) -> float:
        """Percentile in ms (linear interpolation between closest ranks)."""
        values = self.latencies
        if not values:
            return float("nan")
        rank = (len(values) - 1) * q / 100
        low = int(rank)
        high = min(low + 1, len(values) - 1)
        return (values[low] + (values[high] - values[low]) * (rank - low)) * 1000


async def load(host: str, port: int, paths: list[str], *, rate: float | None, duration: float) -> LoadResult:
    """16 keep-alive connections; open-loop Poisson arrivals at ``rate`` (None: back to back)."""
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    deadline = started + duration
    rng = random.Random(1)

    async def connection(index: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        intended = time.perf_counter() + (rng.expovariate(rate / CONNECTIONS) if rate else 0.0)
        try:
            while intended < deadline:
                now = time.perf_counter()
                if rate and intended > now:
                    await asyncio.sleep(intended - now)
                send_at = intended if rate else time.perf_counter()
                path = paths[rng.randrange(len(paths))]
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
                             f"Authorization: {AUTHORIZATION}\r\n\r\n".encode())
                status = await read_response(reader)
                done = time.perf_counter()
                latencies.append(done - send_at)
                if status != 200:
                    errors += 1
                intended = intended + rng.expovariate(rate / CONNECTIONS) if rate else done
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(CONNECTIONS)))
    return LoadResult(latencies, errors, time.perf_counter() - started)


async def warm(host: str, port: int, paths: list[str]) -> None:
    """Request every path once over the 16 connections (the timeline's sample: its SQLite pages
    in the OS cache, as in a server that has been running), results unused."""
    pending = iter(paths)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for path in pending:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTHORIZATION}\r\n\r\n".encode())
                await read_response(reader)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def sample_customer_ids(store_path: Path, count: int) -> list[str]:
    connection = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT name FROM streams WHERE name LIKE 'customer-%' ORDER BY random() LIMIT ?", (count,)
        ).fetchall()
    finally:
        connection.close()
    return [name.removeprefix("customer-") for (name,) in rows]


def server_rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


# --- the store (cached) ----------------------------------------------------------------------


def ensure_store(path: Path, customers: int) -> None:
    """The demo events of ``customers`` in a SQLite store at ``path``, built once."""
    complete = path.with_suffix(".complete")
    if complete.exists() and path.exists():
        return
    from application.demo import generate
    from application.ingest import Ingestor
    from events.registry import REGISTRY
    from events.sqlite.store import SQLiteEventStore

    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    log(f"building the bench store {path} ({customers:,} customers; cached for later runs)")
    started = time.perf_counter()
    store = SQLiteEventStore(path)
    try:
        ingestor = Ingestor(store)
        batch = []
        stored = 0
        for body in generate(customers, SEED):
            batch.append(REGISTRY.validate(body))
            if len(batch) >= STORE_BATCH:
                stored += len(ingestor.append(batch))
                batch = []
        if batch:
            stored += len(ingestor.append(batch))
    finally:
        store.close()
    complete.write_text(str(stored))
    log(f"bench store built: {stored:,} events in {time.perf_counter() - started:.0f} s")


# --- the server subprocess ---------------------------------------------------------------------


def build_views(customers: int, seed: int, snapshot: Path):  # -> (LiveViews, events, how)
    """The population of ``customers`` demo customers: from the journeys snapshot when one
    of this projections' version exists, else folded from the generator (and saved)."""
    from application.live_views import LiveViews
    from projections.journey import IdentityJourney

    header_path = snapshot.with_suffix(".json")
    if snapshot.exists() and header_path.exists():
        header = json.loads(header_path.read_text())
        if header.get("format") == LiveViews.snapshot_version():
            views = LiveViews(background=False)
            journeys = []
            with snapshot.open("rb") as file:
                while size := file.read(4):
                    journey = IdentityJourney.from_bytes(file.read(int.from_bytes(size, "big")))
                    journeys.append((journey.key, journey))
            views.restore(journeys, position=header["position"], data_time=header["data_time"])
            return views, header["events"], "journeys snapshot"
    from application.demo import generate
    from events.logged import LoggedEvent
    from events.registry import REGISTRY

    views = LiveViews(background=False)
    validate = REGISTRY.validate
    batch = []
    position = 0
    for body in generate(customers, seed):
        event = validate(body)
        position += 1
        batch.append(LoggedEvent(position, RECORDED_AT, event.stream, event))
        if len(batch) >= FOLD_BATCH:
            views.apply_events(batch)
            batch = []
    views.apply_events(batch)
    saved_position, data_time, journeys = views.journeys_snapshot()
    temporary = snapshot.with_suffix(".tmp")
    with temporary.open("wb") as file:
        for raw in journeys:
            file.write(len(raw).to_bytes(4, "big"))
            file.write(raw)
    temporary.replace(snapshot)
    header_path.write_text(json.dumps({"format": LiveViews.snapshot_version(), "position": saved_position,
                                       "data_time": data_time, "events": position}))
    return views, position, "generator + validate + fold"


def serve(args: argparse.Namespace) -> int:
    from consumers.api.app import create_app
    from consumers.api.server import base_url, bind_socket, make_server
    from application.settings import Settings
    from events.sqlite.store import SQLiteEventStore

    gc.disable()  # millions of long-lived objects: collections during the build only cost time
    started = time.perf_counter()
    views, events, how = build_views(args.customers, args.seed, Path(args.snapshot))
    build_seconds = time.perf_counter() - started
    log(f"server: population of {events:,} events ready in {build_seconds:.0f} s")
    complete = Path(args.store).with_suffix(".complete")
    while not complete.exists():
        time.sleep(0.5)
    store = SQLiteEventStore(args.store)
    started = time.perf_counter()
    views.refresh()
    precompute_seconds = time.perf_counter() - started
    log(f"server: default views precomputed in {precompute_seconds:.0f} s")
    gc.enable()
    gc.collect()
    gc.freeze()  # the population is long-lived: keep it out of every later collection
    data = Path(tempfile.mkdtemp(prefix="touchpoints-bench-views-"))
    settings = Settings(data=data, store_url=f"sqlite:///{args.store}", demo=False)
    app = create_app(store=store, settings=settings, views=views, access=bench_access(data))
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(app, log_level="warning")
    print(json.dumps({"url": base_url(sock), "events": events, "build_seconds": build_seconds, "built_from": how,
                      "precompute_seconds": precompute_seconds}), flush=True)
    server.run(sockets=[sock])
    store.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.views")
    parser.add_argument("--serve", action="store_true", help="(internal) run the bench server")
    parser.add_argument("--customers", type=int, default=FULL_CUSTOMERS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--store")
    parser.add_argument("--snapshot")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    if args.serve:
        return serve(args)
    from bench.common import format_table

    print(format_table(run(args.scale)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
