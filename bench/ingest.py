"""Ingestion throughput: ``touchpoints ingest`` and ``POST /v1/events`` beside the raw floor.

At scale 1.0 about 200,000 demo events (``application.demo``) are written to a temporary
NDJSON file first. Every figure is measured in this run on fresh database files:

- the floor (``bench.ingest_floor.measure_floor``): the rows the store writes for these
  events, through plain ``sqlite3`` ``executemany`` into the store's own tables with the
  UNIQUE ``(stream_id, stream_version)`` index it keeps, under the writer's PRAGMAs (WAL,
  ``synchronous=FULL``), one commit per batch of the same size as the path it is compared
  with (10,000 for the CLI, 1,000 for HTTP requests of 1,000 events). The targets stand
  against it (issue 15). The bare-table floor of earlier sessions (integer key only, no
  index) is shown beside it for reference. Each path and its floors run in turn, three
  rounds; the table shows the median of each;
- the store alone (``append_batch`` of already encoded events, batches of 10,000);
- the CLI path: ``consumers.cli.ingest.ingest_file`` on the file, in a fresh process so its
  peak memory is its own (decoder processes and decoder thread variants), with its CPU
  time per event, children included (a figure that holds up better than events/s on a busy
  shared machine); with personal data not sealed, and sealed (the default for a new data
  folder: ``application.privacy``), each beside floors of its own rounds;
- the HTTP batch endpoint: a real uvicorn server in a subprocess, 4 concurrent clients
  posting pre-encoded 1,000-event arrays; the CPU time per event and the summed peak RSS
  of the server and its decoding workers;
- reading that log back: the store's ``read_all`` in process, ``GET /v1/events`` paged by
  one client beside it, and the p99 of small pages read by 16 clients at once.

``python -m bench ingest`` runs it; the ``cli`` and ``server`` sub-commands of this module
are the subprocesses it starts.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import Row
from bench.http_load import BENCH_HEADERS, bench_access, bench_env, json_arrays, post_concurrently
from bench.ingest_floor import _remove_database, floor_rows, measure_bare_floor, measure_floor, measure_store
from application.demo import generate
from events.encoded import encode_events
from events.registry import REGISTRY
from events.store import NewEvent

EVENTS_PER_CUSTOMER = 10.5  # what the demo generator yields on average
FULL_EVENTS = 200_000
CLI_BATCH = 10_000
HTTP_BATCH = 1_000
HTTP_CLIENTS = 4
ROOT = Path(__file__).resolve().parent.parent


def run(scale: float) -> list[Row]:
    customers = max(200, int(FULL_EVENTS * scale / EVENTS_PER_CUSTOMER))
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
        work = Path(folder)
        source = work / "demo.ndjson"
        lines = _write_demo(source, customers)
        events = _decode(lines)
        count = len(events)
        rows_for_floor = floor_rows(events)

        store_rate = measure_store(events, work / "store.db", batch_size=CLI_BATCH)
        # Each path alternates with its floors, so all see the machine in the same state
        # (on this shared machine the bare floor alone moved between 130k and 220k rows/s).
        (floor_cli, bare_cli), cli = _rounds(
            [lambda: measure_floor(rows_for_floor, work / "floor.db", batch_size=CLI_BATCH),
             lambda: measure_bare_floor(rows_for_floor, work / "bare.db", batch_size=CLI_BATCH)],
            lambda: _cli_in_fresh_process(source, work / "cli.db", decoder="auto"),
            key="events_per_second",
        )
        (floor_sealed,), cli_sealed = _rounds(
            [lambda: measure_floor(rows_for_floor, work / "floor_sealed.db", batch_size=CLI_BATCH)],
            lambda: _cli_in_fresh_process(source, work / "cli_sealed.db", decoder="auto", sealed=True),
            key="events_per_second",
        )
        cli_thread = _cli_in_fresh_process(source, work / "cli_thread.db", decoder="thread")
        (floor_http, bare_http), http = _rounds(
            [lambda: measure_floor(rows_for_floor, work / "floor_http.db", batch_size=HTTP_BATCH),
             lambda: measure_bare_floor(rows_for_floor, work / "bare_http.db", batch_size=HTTP_BATCH)],
            lambda: _http(lines, work / "http.db"),
            key=0,
        )
        http_rate, server_rss, server_cpu = http
        port_read, api_read, page_p99 = _read_back(work / "http.db", count)

    floor_cli_name = f"floor, batches of {CLI_BATCH:,}"
    floor_http_name = f"floor, batches of {HTTP_BATCH:,}"
    floor_case = "floor: plain sqlite3, the store's rows, tables and index, synchronous=FULL, batches of"
    bare_case = "bare-table floor (integer key only, before issue 15), batches of"
    return [
        Row("ingest", f"{floor_case} {CLI_BATCH:,}", floor_cli, "rows/s"),
        Row("ingest", f"{floor_case} {HTTP_BATCH:,}", floor_http, "rows/s"),
        Row("ingest", f"{bare_case} {CLI_BATCH:,}", bare_cli, "rows/s", floor_cli_name, floor_cli),
        Row("ingest", f"{bare_case} {HTTP_BATCH:,}", bare_http, "rows/s", floor_http_name, floor_http),
        Row("ingest", f"store append_batch ({count:,} encoded events, batches of {CLI_BATCH:,})", store_rate,
            "events/s", floor_cli_name, floor_cli),
        Row("ingest", f"touchpoints ingest FILE (decoder: {cli['decoder']}, batches of {CLI_BATCH:,})",
            cli["events_per_second"], "events/s", floor_cli_name, floor_cli, ">= 0.5x",
            cli["events_per_second"] >= 0.5 * floor_cli),
        Row("ingest", f"touchpoints ingest FILE, personal data sealed (the default; decoder: {cli_sealed['decoder']})",
            cli_sealed["events_per_second"], "events/s", floor_cli_name, floor_sealed, ">= 0.5x",
            cli_sealed["events_per_second"] >= 0.5 * floor_sealed),
        Row("ingest", "touchpoints ingest CPU per event, sealed (parent + decoder children)",
            cli_sealed["cpu_us_per_event"], "us/event"),
        Row("ingest", "touchpoints ingest FILE (decoder: thread)", cli_thread["events_per_second"], "events/s",
            floor_cli_name, floor_cli),
        Row("ingest", "touchpoints ingest CPU per event (parent + decoder children)", cli["cpu_us_per_event"],
            "us/event"),
        Row("ingest", "touchpoints ingest peak RSS (parent + decoder children)",
            cli["peak_rss_mib"] + cli["decoder_peak_rss_mib"], "MiB"),
        Row("ingest", f"POST /v1/events ({HTTP_CLIENTS} clients x {HTTP_BATCH:,}-event arrays)", http_rate,
            "events/s", floor_http_name, floor_http, ">= 0.3x", http_rate >= 0.3 * floor_http),
        Row("ingest", "HTTP server CPU per event (server + decoding workers)", server_cpu, "us/event"),
        Row("ingest", "HTTP server peak RSS (server + decoding workers)", server_rss, "MiB"),
        Row("ingest", "store read_all of the same log (in process)", port_read, "events/s"),
        Row("ingest", f"GET /v1/events, 1 client, pages of {READ_PAGE:,}", api_read, "events/s",
            "store read_all", port_read),
        Row("ingest", f"GET /v1/events p99, {READ_CLIENTS} clients, pages of {READ_SMALL_PAGE}", page_p99, "ms"),
    ]


ROUNDS = 3


def _rounds(floors: list[Callable[[], float]], path: Callable[[], Any], *, key: Any) -> tuple[list[float], Any]:
    """``ROUNDS`` times each floor then the path: the median of each floor, and the path's
    run with the median rate (``run[key]``)."""
    measured: list[list[float]] = [[] for _ in floors]
    runs = []
    for _ in range(ROUNDS):
        for floor, values in zip(floors, measured):
            values.append(floor())
        runs.append(path())
    runs.sort(key=lambda run: run[key])
    return [statistics.median(values) for values in measured], runs[len(runs) // 2]


def _write_demo(path: Path, customers: int) -> list[bytes]:
    lines = [orjson.dumps(event) for event in generate(customers, seed=1)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def _decode(lines: list[bytes]) -> list[tuple[str, NewEvent]]:
    return encode_events([REGISTRY.validate(orjson.loads(line)) for line in lines]).new_events()


# --- the CLI path, in a fresh process ------------------------------------------------------


def _cli_in_fresh_process(source: Path, database: Path, *, decoder: str, sealed: bool = False) -> dict:
    _remove_database(database)
    finished = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "cli", str(source), str(database), decoder, "1" if sealed else "0"],
        capture_output=True, cwd=ROOT, check=True, timeout=1800,
    )
    return json.loads(finished.stdout)


def cli_main(source: str, database: str, decoder: str, sealed: str = "0") -> None:
    from application.privacy.policy import Sealing
    from consumers.cli.ingest import ingest_file
    from events.sqlite.store import SQLiteEventStore

    keys = Path(database).with_suffix(".keys")  # a data folder of its own: a fresh key store
    if sealed == "1":
        shutil.rmtree(keys, ignore_errors=True)
    sealing = Sealing.in_folder(keys) if sealed == "1" else None
    children_peak = _ChildrenPeak().start()
    with SQLiteEventStore(database) as store, open(source, "rb") as handle:
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        report = ingest_file(handle, store, size_hint=os.path.getsize(source), batch_size=CLI_BATCH,
                             decoder=decoder, sealing=sealing)
        elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
    children_peak.stop()
    print(json.dumps({
        "events_per_second": (report.accepted + report.duplicates) / elapsed,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "decoder": report.decoder,
        "peak_rss_mib": _peak_rss_mib(os.getpid()),
        "decoder_peak_rss_mib": children_peak.mib,
        "cpu_us_per_event": cpu / max(1, report.accepted + report.duplicates) * 1e6,
    }))


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the decoder), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _ChildrenPeak:
    """Samples the peak RSS (VmHWM) of this process's children. (``ru_maxrss`` would not do:
    Linux carries it across fork and exec, so a child of a big process looks big.)"""

    def __init__(self, parent: int | None = None) -> None:
        self.parent = parent  # None: this process
        self._peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> "_ChildrenPeak":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        """The sum of every child's peak (they run at the same time)."""
        return sum(self._peaks.values())

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for pid in _children(self.parent):
                try:
                    self._peaks[pid] = max(self._peaks.get(pid, 0.0), _peak_rss_mib(pid))
                except (OSError, ValueError):
                    pass  # it just exited


def _children(parent: int | None = None) -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{parent or 'self'}/task").iterdir():
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


# --- the HTTP path: a real server in a subprocess ----------------------------------------------


def _http(lines: list[bytes], database: Path) -> tuple[float, float, float]:
    _remove_database(database)
    bodies = json_arrays(lines, HTTP_BATCH)
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.ingest", "server", str(database)],
        stdout=subprocess.PIPE, cwd=ROOT, text=True, env=bench_env(),
    )
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        if not url.startswith("http"):
            raise RuntimeError(f"the bench server did not start: {url!r}")
        with httpx.Client(base_url=url, timeout=60, headers=BENCH_HEADERS) as client:  # warm up: connections, first transaction
            client.get("/healthz").raise_for_status()
        workers_peak = _ChildrenPeak(server.pid).start()
        started, cpu_started = time.perf_counter(), _tree_cpu_seconds(server.pid)
        accepted = post_concurrently(url, bodies, clients=HTTP_CLIENTS)
        elapsed, cpu = time.perf_counter() - started, _tree_cpu_seconds(server.pid) - cpu_started
        workers_peak.stop()
        rss = _peak_rss_mib(server.pid) + workers_peak.mib
    finally:
        server.terminate()
        server.wait(30)
    if accepted != len(lines):
        raise RuntimeError(f"the server accepted {accepted} of {len(lines)} events")
    return accepted / elapsed, rss, cpu / accepted * 1e6


READ_PAGE = 1_000
READ_SMALL_PAGE = 100
READ_CLIENTS = 16


def _read_back(database: Path, count: int) -> tuple[float, float, float]:
    """Reading the log the HTTP path wrote: the store's ``read_all`` in this process, then
    ``GET /v1/events`` from one client paging through all of it, and the p99 of pages
    read by ``READ_CLIENTS`` clients at once."""
    from events.sqlite.store import SQLiteEventStore

    with SQLiteEventStore(database) as store:
        started = time.perf_counter()
        read = sum(1 for _ in store.read_all())
        port_rate = read / (time.perf_counter() - started)
    if read != count:
        raise RuntimeError(f"the log holds {read} events, expected {count}")
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.ingest", "server", str(database)], stdout=subprocess.PIPE, cwd=ROOT, text=True,
        env=bench_env(),
    )
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        with httpx.Client(base_url=url, timeout=60, headers=BENCH_HEADERS) as client:
            client.get("/healthz").raise_for_status()
            started, position, seen = time.perf_counter(), 0, 0
            while True:
                page = orjson.loads(client.get("/v1/events", params={"from_position": position,
                                                                     "limit": READ_PAGE}).content)
                seen += len(page["events"])
                position = page["next_position"]
                if not page["has_more"]:
                    break
            api_rate = seen / (time.perf_counter() - started)
        if seen != count:
            raise RuntimeError(f"GET /v1/events gave {seen} events, expected {count}")
        latencies = _concurrent_page_latencies(url, count)
    finally:
        server.terminate()
        server.wait(30)
    return port_rate, api_rate, latencies[int(len(latencies) * 0.99)] * 1e3


def _concurrent_page_latencies(url: str, count: int, pages_each: int = 20) -> list[float]:
    latencies: list[float] = []

    def client_loop(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60, headers=BENCH_HEADERS) as client:
            for n in range(pages_each):
                position = (k * pages_each + n) * READ_SMALL_PAGE % max(1, count - READ_SMALL_PAGE)
                started = time.perf_counter()
                params = {"from_position": position, "limit": READ_SMALL_PAGE}
                client.get("/v1/events", params=params).raise_for_status()
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(READ_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(latencies)


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (the server's decoding workers)."""
    total = _process_cpu_seconds(pid)
    for child in _children(pid):
        try:
            total += _process_cpu_seconds(child)
        except OSError:
            pass  # it just exited
    return total


def _process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_main(database: str) -> None:
    from consumers.api.app import create_app
    from consumers.api.server import base_url, bind_socket, make_server, tune_gc_for_throughput
    from application.settings import Settings
    from events.sqlite.store import SQLiteEventStore

    workers = os.environ.get("TOUCHPOINTS_INGEST_WORKERS")  # to compare pool sizes by hand
    settings = Settings.from_env({"TOUCHPOINTS_DEMO": "0", **({"TOUCHPOINTS_INGEST_WORKERS": workers} if workers else {})})
    with SQLiteEventStore(database) as store, tempfile.TemporaryDirectory(prefix="bench-access-") as data:
        sock = bind_socket("127.0.0.1", 0)
        app = create_app(store=store, settings=settings, access=bench_access(Path(data)))
        server = make_server(app, log_level="warning")
        app.state.body_decoder.start()  # as `touchpoints serve` does
        tune_gc_for_throughput()
        print(base_url(sock), flush=True)
        server.run(sockets=[sock])


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "cli":
        cli_main(*arguments)
    elif command == "server":
        server_main(*arguments)
    else:
        sys.exit(f"unknown command {command!r}: expected cli or server")
