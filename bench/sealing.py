"""What sealing personal data costs ingestion (``TOUCHPOINTS_SEAL_PERSONAL_DATA``).

The demo journeys (about 200,000 events at scale 1.0: an anonymous id on every touch, a
handle on social touches, free text on support tickets) are ingested with sealing off
and on, alternating, ``ROUNDS`` times each, every run on fresh files:

- ``touchpoints ingest FILE`` (``consumers.cli.ingest.ingest_file``, forked decoders) in a
  fresh process: events/s and CPU per event, decoder children included;
- ``POST /v1/events``: a real server in a subprocess (decoding workers on), 4 clients
  posting 1,000-event arrays: events/s and CPU per event of the server and its workers.

Sealing runs where decoding runs (the decoders, the workers), once per event; the first
event of each identity also makes its key (one key store transaction per batch).
``python -m bench sealing`` runs it; ``cli`` and ``server`` are its subprocesses.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import Row
from bench.http_load import BENCH_HEADERS, bench_access, bench_env, json_arrays, post_concurrently
from bench.ingest import (
    CLI_BATCH, EVENTS_PER_CUSTOMER, FULL_EVENTS, HTTP_BATCH, HTTP_CLIENTS, ROOT, _cpu_seconds, _tree_cpu_seconds,
    _write_demo,
)

ROUNDS = 3
MODES = {"off": "0", "on": "1"}


def run(scale: float) -> list[Row]:
    customers = max(200, int(FULL_EVENTS * scale / EVENTS_PER_CUSTOMER))
    cli: dict[str, list[dict]] = {mode: [] for mode in MODES}
    http: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-sealing-") as folder:
        work = Path(folder)
        source = work / "demo.ndjson"
        lines = _write_demo(source, customers)
        for round_ in range(ROUNDS):
            for mode in MODES:  # alternating: both see the machine in the same state
                data = work / f"{mode}-{round_}"
                data.mkdir()
                cli[mode].append(_in_subprocess("cli", str(source), str(data), MODES[mode]))
                http[mode].append(_http(lines, work / f"{mode}-{round_}-http", MODES[mode]))
    rows = []
    for path, runs in (("touchpoints ingest FILE", cli), (f"POST /v1/events ({HTTP_CLIENTS} clients)", http)):
        for key, unit in (("events_per_second", "events/s"), ("cpu_us_per_event", "us/event")):
            off = statistics.median(run[key] for run in runs["off"])
            on = statistics.median(run[key] for run in runs["on"])
            spread = ", ".join(f"{run[key]:,.1f}" for run in runs["on"])
            rows.append(Row("sealing", f"{path}, sealing off: {key.replace('_', ' ')}", off, unit))
            rows.append(Row("sealing", f"{path}, sealing on ({spread})", on, unit, "sealing off", off))
    return rows


def _in_subprocess(*arguments: str) -> dict:
    finished = subprocess.run([sys.executable, "-m", "bench.sealing", *arguments], capture_output=True, cwd=ROOT,
                              check=True, timeout=1800)
    return json.loads(finished.stdout)


def _http(lines: list[bytes], data: Path, sealed: str) -> dict:
    data.mkdir()
    bodies = json_arrays(lines, HTTP_BATCH)
    server = subprocess.Popen([sys.executable, "-m", "bench.sealing", "server", str(data), sealed],
                              stdout=subprocess.PIPE, cwd=ROOT, text=True, env=bench_env())
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        if not url.startswith("http"):
            raise RuntimeError(f"the bench server did not start: {url!r}")
        with httpx.Client(base_url=url, timeout=60, headers=BENCH_HEADERS) as client:
            client.get("/healthz").raise_for_status()
        started, cpu_started = time.perf_counter(), _tree_cpu_seconds(server.pid)
        accepted = post_concurrently(url, bodies, clients=HTTP_CLIENTS)
        elapsed, cpu = time.perf_counter() - started, _tree_cpu_seconds(server.pid) - cpu_started
    finally:
        server.terminate()
        server.wait(30)
    if accepted != len(lines):
        raise RuntimeError(f"the server accepted {accepted} of {len(lines)} events")
    return {"events_per_second": accepted / elapsed, "cpu_us_per_event": cpu / accepted * 1e6}


def cli_main(source: str, data: str, sealed: str) -> None:
    import os

    from application.privacy.policy import Sealing
    from consumers.cli.ingest import ingest_file
    from events.sqlite.store import SQLiteEventStore

    sealing = Sealing.in_folder(data) if sealed == "1" else None
    with SQLiteEventStore(Path(data) / "events.db") as store, open(source, "rb") as handle:
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        report = ingest_file(handle, store, size_hint=os.path.getsize(source), batch_size=CLI_BATCH,
                             sealing=sealing)
        elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
    count = report.accepted + report.duplicates
    print(json.dumps({"events_per_second": count / elapsed, "cpu_us_per_event": cpu / count * 1e6}))


def server_main(data: str, sealed: str) -> None:
    from application.settings import Settings
    from consumers.api.app import create_app
    from consumers.api.server import base_url, bind_socket, make_server, tune_gc_for_throughput
    from events.sqlite.store import SQLiteEventStore

    settings = Settings.from_env({"TOUCHPOINTS_DEMO": "0", "TOUCHPOINTS_DATA": data,
                                  "TOUCHPOINTS_SEAL_PERSONAL_DATA": sealed})
    with SQLiteEventStore(Path(data) / "events.db") as store:
        sock = bind_socket("127.0.0.1", 0)
        app = create_app(store=store, settings=settings, access=bench_access(Path(data)))
        server = make_server(app, log_level="warning")
        app.state.body_decoder.start()
        tune_gc_for_throughput()
        print(base_url(sock), flush=True)
        server.run(sockets=[sock])


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"cli": cli_main, "server": server_main}[command](*arguments)
