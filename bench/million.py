"""bench/million: the whole platform at 1,000,000 customers, backfilled then live (issue 14).

Not in the default set of ``python -m bench`` (it takes tens of minutes at scale 1.0):
``python -m bench million --scale 1.0``. Scale s: s x 1,000,000 demo customers (~10.5
events each, whole blocks of 1,000, at least 10,000).

1. The demo journeys (``application.demo.generate``, seed 1, as bench/ingest and
   bench/pipeline) are written as NDJSON, cached under the benches' cache folder
   (``bench.views.cache_dir``): the population, and the next customers (new ids: the
   demo numbers customers in order) for the live phase. A fresh data folder is
   backfilled with the real CLI, ``touchpoints ingest FILE`` (personal data sealed, the
   default): events/s and CPU per event.
2. ``touchpoints up`` (the real CLI, bundled broker, ``TOUCHPOINTS_VIEWS_JOURNEYS_ON_DISK=1`` and
   ``TOUCHPOINTS_WORKER_JOURNEYS_ON_DISK=1``)
   starts on that folder. Catch-up: from its spawn to ``/v1/views/status`` at the store's
   head with the default documents refreshed and ``/healthz`` ok; events/s, and for each
   process (by role, from ``/proc``) CPU, peak RSS (``VmHWM``) and current RSS. Then
   ``touchpoints verify --views --api URL`` compares every document with a replay, once,
   if it finishes within ``VERIFY_SECONDS`` and memory allows (else the table says so).
3. Live: new customers' events. First a warm-up outside the figures, as bench/pipeline's:
   one array a sender at once (the API's pool starts its decoding workers; the writer
   loads its id index at its first append), until the views hold them; the time is shown.
   Then POSTed at a steady ``LIVE_RATE`` (arrays of ``LIVE_ARRAY`` events, one every
   ``LIVE_ARRAY / LIVE_RATE`` s by the clock, taken in turn by ``LIVE_SENDERS`` clients, so
   a slow answer delays no other array; a 429 is sent again after its ``Retry-After``, as a
   client does, and counted) for ``LIVE_SECONDS``. Freshness, as bench/stream
   defines it (from the append committed, here the POST's answer, to the event visible in
   the views), with ``/v1/views/status`` polled every 10 ms from another thread: "applied",
   the status position reaching the POST's last position (the highest position any
   applied journey reflects: over Kafka not a watermark, so a lower bound for events of
   other partitions); "documents", the default documents refreshed past the version
   first seen there (the target's figure). Meanwhile one reader GETs the default
   documents in turn every 100 ms, as a dashboard would.
4. Queries, the platform idle: ``GETS`` GETs of each default document the dashboard shows
   (``bench.views.PRECOMPUTED`` and ``/v1/attribution?model=`` each model), and of
   parameterised queries, each GET a different one-year window (so each is computed,
   not served from the cache): attribution linear, time decay, markov and shapley with
   ``lookback_days=30``, first contact with a window. p50 / p99 / max.
5. Restart: SIGTERM to ``touchpoints up`` (timed to its exit: it saves the views' state),
   started again on the same folder; from the spawn to the first ``/v1/funnel`` with the
   bytes served before the stop and ``X-Touchpoints-Position`` = the head (bench/restart's
   check), to the first answer of a windowed attribution query (only the live views answer
   it: restored documents do not), and to ``/healthz``'s views ``ok`` (the whole pipeline at
   the head again; then every default document is compared with the one served before).

Kept: with ``TOUCHPOINTS_BENCH_KEEP=DIR`` (an empty or new folder) the run's folder (data
folder, logs, and the head and documents served before the stop) stays in DIR; run again
with the same DIR, the bench only restarts that platform ``TOUCHPOINTS_BENCH_RESTARTS``
times (default 3), each as step 5 and stopped with SIGTERM: a restart studied or compared
without the half hour before it.

Every phase logs its figures to stderr as soon as they are known. A memory guard aborts
the run (kills the platform) when the machine's available memory falls below
``MEMORY_FLOOR_MIB``; the verify subprocess is killed first when it is the one running.

Targets (issue 14): API RSS <= 1.5 GiB, platform <= 4 GiB, freshness p99 < 2 s at
5,000 events/s, default documents p99 < 50 ms, parameterised queries < 1 s, restart to
correct views < 10 s.
"""

from __future__ import annotations

import itertools
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy
import orjson

from bench.common import Row, format_table
from bench.http_load import BENCH_ADMIN_KEY, BENCH_HEADERS, bench_env, json_arrays, post_concurrently
from bench.pipeline import API, ROLE_ORDER, ROOT, Process, Up, platform_processes, usage_by_role, views_status
from bench.views import MODELS, PRECOMPUTED, cache_dir, server_rss_mib

BENCH = "million"
FULL_CUSTOMERS = 1_000_000
MIN_CUSTOMERS = 10_000
SEED = 1
LIVE_RATE = 5_000  # events/s
LIVE_SECONDS = 65.0
LIVE_ARRAY = 500  # events a POST: one every 100 ms
LIVE_CUSTOMERS = 40_000  # ~420k events: more than LIVE_SECONDS at LIVE_RATE
LIVE_SENDERS = 4  # clients taking the arrays in turn, each sent at its time (a slow answer delays no other)
LATE_SECONDS = 0.05
STATUS_POLL = 0.01
DASHBOARD_READ_INTERVAL = 0.1
GETS = 30
QUERY_SECONDS_CAP = 120.0  # a parameterised query kind stops earlier if its GETs take this long
VERIFY_SECONDS = 600.0  # a slow hour of this machine needs over 300 s for the replay at a million customers
RESTART_POLL = 0.02
MEMORY_FLOOR_MIB = 3_500  # of MemAvailable: the machine's 24 GiB minus ~20 GiB in use
API_RSS_TARGET_MIB = 1_536.0
PLATFORM_RSS_TARGET_MIB = 4_096.0
FRESHNESS_TARGET_MS = 2_000.0
DOCUMENT_TARGET_MS = 50.0
QUERY_TARGET_MS = 1_000.0
RESTART_TARGET_SECONDS = 10.0
STOP_SECONDS = 600.0  # a clean stop saves the views' state: a few seconds a 100,000 customers
WINDOWED = {"model": "linear", "lookback_days": 30}  # after a restart, answered only by the live views
ON_DISK = {"TOUCHPOINTS_VIEWS_JOURNEYS_ON_DISK": "1", "TOUCHPOINTS_WORKER_JOURNEYS_ON_DISK": "1"}
KEEP_VARIABLE = "TOUCHPOINTS_BENCH_KEEP"  # a folder: the run is kept there, and restarted when run again
REFERENCE_FILE = "reference.json"  # in a kept folder: the head and the documents a restart must serve
RESTARTS_VARIABLE = "TOUCHPOINTS_BENCH_RESTARTS"  # restarts of a kept run (default 3)

DEFAULT_DOCUMENTS = [*PRECOMPUTED.values(), *(f"/v1/attribution?model={model}" for model in MODELS)]
WINDOW_START = (2023, 1, 1)  # a one-year window, shifted by a day for each GET


def log(message: str) -> None:
    print(f"  [million] {message}", file=sys.stderr, flush=True)


def report(rows: list[Row]) -> list[Row]:
    """Print a phase's rows to stderr as soon as they are known (a partial run still yields them)."""
    print(format_table(rows), file=sys.stderr, flush=True)
    return rows


# --- the journeys (cached) ------------------------------------------------------------------


def journey_files(customers: int) -> tuple[Path, Path]:
    """NDJSON files of the demo journeys: ``customers`` for the backfill, the next
    ``LIVE_CUSTOMERS`` (ids not in the first) for the live phase; written once."""
    from application.demo import generate

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    backfill = folder / f"million-{customers}-{SEED}.ndjson"
    live = folder / f"million-{customers}-{SEED}-live-{LIVE_CUSTOMERS}.ndjson"
    for path, first, count in ((backfill, 0, customers), (live, customers, LIVE_CUSTOMERS)):
        complete = path.with_suffix(".complete")
        if path.exists() and complete.exists():
            continue
        log(f"writing {path} (customers {first:,} to {first + count:,}; cached for later runs)")
        started = time.perf_counter()
        # The demo draws customers in order, so the first ``first`` customers' events come first.
        skip = sum(1 for _ in generate(first, seed=SEED))
        written = 0
        temporary = path.with_suffix(".tmp")
        with temporary.open("wb") as file:
            for event in itertools.islice(generate(first + count, seed=SEED), skip, None):
                file.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
                written += 1
        temporary.replace(path)
        complete.write_text(str(written))
        log(f"{written:,} events written in {time.perf_counter() - started:.0f} s")
    return backfill, live


# --- the memory guard -----------------------------------------------------------------------


class MemoryGuard:
    """A thread that kills the run's processes when available memory runs low: the
    ``expendable`` process if one is set, else the platform under ``root``."""

    def __init__(self, floor_mib: float = MEMORY_FLOOR_MIB):
        self.floor_mib = floor_mib
        self.root: int | None = None
        self.expendable: subprocess.Popen[bytes] | None = None
        self.tripped = ""
        self.lowest_available_mib = float("inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="memory-guard", daemon=True)

    def __enter__(self) -> "MemoryGuard":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        if self.tripped:
            raise RuntimeError(self.tripped)

    def _watch(self) -> None:
        logged = time.monotonic()
        while not self._stop.wait(1.0):
            available = available_mib()
            self.lowest_available_mib = min(self.lowest_available_mib, available)
            if time.monotonic() - logged >= 30:
                logged = time.monotonic()
                log(f"memory: {available:,.0f} MiB available" + (f"; platform RSS by role: {rss_by_role(self.root)}"
                                                                 if self.root else ""))
            if available >= self.floor_mib:
                continue
            if self.expendable is not None and self.expendable.poll() is None:
                log(f"memory: {available:,.0f} MiB available, below {self.floor_mib:,} MiB: killing the verify")
                self.expendable.kill()
            elif self.root is not None and not self.tripped:
                self.tripped = (f"aborted: {available:,.0f} MiB of memory available, below {self.floor_mib:,} MiB; "
                                f"platform RSS by role then: {rss_by_role(self.root)}")
                log(self.tripped)
                for process in reversed(platform_processes(self.root)):
                    try:
                        os.kill(process.pid, signal.SIGKILL)
                    except OSError:
                        pass


def available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_by_role(root: int) -> dict[str, float]:
    """Current RSS (``VmRSS``, MiB) of the platform's processes, summed by role."""
    roles: dict[str, float] = {}
    for process in platform_processes(root):
        roles[process.role] = roles.get(process.role, 0.0) + server_rss_mib(process.pid)
    return {role: round(mib) for role, mib in roles.items()}


# --- the benchmark --------------------------------------------------------------------------


def run(scale: float) -> list[Row]:
    customers = max(MIN_CUSTOMERS, round(FULL_CUSTOMERS * scale / 1000) * 1000)
    kept = os.environ.get(KEEP_VARIABLE)
    if kept and (Path(kept) / REFERENCE_FILE).exists():
        return restarts_only(Path(kept), customers)
    if kept and Path(kept).exists() and any(Path(kept).iterdir()):
        raise RuntimeError(f"{KEEP_VARIABLE}={kept}: not empty, and no finished run in it ({REFERENCE_FILE})")
    backfill_file, live_file = journey_files(customers)
    with tempfile.TemporaryDirectory(prefix="bench-million-") as temporary, MemoryGuard() as guard:
        folder = Path(kept) if kept else Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        return whole_run(folder, customers, backfill_file, live_file, guard, keep=bool(kept))


def whole_run(folder: Path, customers: int, backfill_file: Path, live_file: Path, guard: "MemoryGuard", *,
              keep: bool) -> list[Row]:
    rows: list[Row] = []
    data = folder / "data"
    rows += report(backfill(backfill_file, data, customers))
    up = Up(folder, env=ON_DISK, healthy_within=None, stop_signal=signal.SIGTERM, stop_within=STOP_SECONDS)
    started = time.perf_counter()
    with up:
        guard.root = up.pid
        with httpx.Client(base_url=up.url, timeout=120, headers=BENCH_HEADERS) as client:
            head = store_head(data)
            peaks = PhasePeaks(up.pid)
            rows += report(catch_up(client, up, started, head, guard, peaks))
            rows += report(peaks.next_phase("at catch-up"))
            rows += report(verify(up, guard))
            rows += report(peaks.next_phase("during verify --views"))
            rows += report(live(client, up.url, data, live_file, guard))
            rows += report(peaks.next_phase("during live ingest"))
            rows += report(queries(client))
            head, reference = documents_at_head(client, data, guard)
            rows += report(peaks.next_phase("during the idle queries"))
            rows += report(peaks.whole_run("whole run before the restart"))
            rows += report(broker_restart_rows(client, "over the run"))
            peaks.close()
        guard.root = None
        stopping = time.perf_counter()  # the stop is timed: ``Up`` sends SIGTERM on leaving
    rows += report([Row(BENCH, "SIGTERM -> touchpoints up exited", time.perf_counter() - stopping, "s")])
    rows += report(restart(folder, ON_DISK, head, reference, guard))
    if keep:
        write_reference(folder, customers, head, reference)
    rows += report([Row(BENCH, "the machine's lowest MemAvailable in the run (others' work included)",
                        guard.lowest_available_mib, "MiB")])
    return rows


def write_reference(folder: Path, customers: int, head: int, reference: dict[str, bytes]) -> None:
    """What ``restarts_only`` checks a restart against: the store's head and the default
    documents served there before the first stop."""
    documents = {path: document.decode() for path, document in reference.items()}
    # the admin key too: the kept access store knows only this run's (a bench's own folder)
    (folder / REFERENCE_FILE).write_bytes(orjson.dumps({"customers": customers, "head": head, "documents": documents,
                                                        "admin_key": BENCH_ADMIN_KEY}))
    log(f"kept the run's folder in {folder}: `{KEEP_VARIABLE}={folder} python -m bench million` restarts it")


def restarts_only(folder: Path, customers: int) -> list[Row]:
    """``TOUCHPOINTS_BENCH_RESTARTS`` restarts of a kept run's platform (each stopped with
    SIGTERM, timed): the restart's figures again without the 30 minutes before them."""
    kept = orjson.loads((folder / REFERENCE_FILE).read_bytes())
    if kept["customers"] != customers:
        raise RuntimeError(f"{folder} holds a run at {kept['customers']:,} customers, not {customers:,}: "
                           "give its --scale")
    reference = {path: document.encode() for path, document in kept["documents"].items()}
    restarts = int(os.environ.get(RESTARTS_VARIABLE, "3"))
    rows: list[Row] = []
    with MemoryGuard() as guard:
        for number in range(1, restarts + 1):
            log(f"restart {number} of {restarts} of the run kept in {folder}")
            stopping: list[float] = []
            rows += report([replace(row, case=f"restart {number}: {row.case.removeprefix('restart: ')}") for row in
                            restart(folder, ON_DISK, kept["head"], reference, guard, stopped=stopping,
                                    headers={"authorization": f"Bearer {kept['admin_key']}"})])
            rows += report([Row(BENCH, f"restart {number}: SIGTERM -> touchpoints up exited", stopping[0], "s")])
    return rows


def store_head(data: Path) -> int:
    from application.settings import default_sqlite_url
    from events.factory import open_store

    store = open_store(default_sqlite_url(data))
    try:
        return store.head_position()
    finally:
        store.close()


# --- 1. backfill ----------------------------------------------------------------------------


def backfill(source: Path, data: Path, customers: int) -> list[Row]:
    """``touchpoints ingest FILE`` on a fresh data folder, as a user runs it."""
    log(f"backfilling {data} from {source} with touchpoints ingest")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-m", "consumers.cli.main", "ingest", str(source), "--quiet", "--json"],
                              cwd=ROOT, env=bench_env(TOUCHPOINTS_DATA=str(data), TOUCHPOINTS_STORE=""),
                              capture_output=True, check=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    summary = orjson.loads(finished.stdout.strip().splitlines()[-1])
    events = summary["accepted"]
    log(f"backfill summary: {summary}")
    return [
        Row(BENCH, f"backfill: touchpoints ingest, {customers:,} customers ({events:,} events), sealed",
            events / elapsed, "events/s"),
        Row(BENCH, "backfill: touchpoints ingest CPU per event (with its decoders)", cpu / events * 1e6, "us/event"),
        Row(BENCH, "backfill: wall time", elapsed, "s"),
    ]


# --- 2. catch-up ----------------------------------------------------------------------------


def catch_up(client: httpx.Client, up: Up, started: float, head: int, guard: MemoryGuard,
             peaks: "PhasePeaks") -> list[Row]:
    """From the spawn of ``touchpoints up`` to views at the head, refreshed, and ``/healthz`` ok."""
    status: dict[str, Any] = {}

    def caught_up() -> bool:
        if up.process.poll() is not None:
            raise RuntimeError(f"touchpoints up exited ({up.process.returncode}) during the catch-up")
        status.update(views_status(client))
        # the views' own status: the whole's is "ok" while they are still catching up
        return at_head(status, head) and views_ok(client)

    def progress(elapsed: float) -> str:
        reached = status.get("position") or 0
        return (f"catch-up: views at {reached:,} of {head:,} after {elapsed:.0f} s ({reached / elapsed:,.0f} events/s "
                f"so far); RSS {rss_by_role(up.pid)}")

    seconds = poll_until(caught_up, progress, started=started, timeout=600 + head / 5_000, every=0.2, guard=guard,
                         what=f"the views at the head ({head:,})")
    spent = peaks.cpu_by_role()
    log(f"caught up: {head:,} events in {seconds:.1f} s")
    rows = [Row(BENCH, f"catch-up: spawn of touchpoints up -> views at the head ({head:,} events), /healthz ok",
                head / seconds, "events/s"),
            Row(BENCH, "catch-up: wall time", seconds, "s")]
    known = {role: n for n, role in enumerate(ROLE_ORDER)}
    for role in sorted(spent, key=lambda role: (known.get(role, len(known)), role)):
        rows.append(Row(BENCH, f"catch-up CPU per event: {role}", spent[role] / head * 1e6, "us/event"))
    current = rss_by_role(up.pid)
    for role, mib in current.items():
        rows.append(Row(BENCH, f"RSS now, at catch-up: {role}", mib, "MiB"))
    return rows + broker_restart_rows(client, "at catch-up")


def broker_restart_rows(client: httpx.Client, when: str) -> list[Row]:
    """The bundled broker's planned restarts so far (``streams.broker_recycle``). The CPU rows
    count the processes running now: a restarted broker's, relay's and worker's earlier CPU
    is not in them."""
    kafka = healthz(client).get("components", {}).get("kafka", {})
    if "restarts_planned" not in kafka:
        return []
    log(f"bundled broker {when}: {kafka['restarts_planned']} planned restarts; last {kafka.get('last_restart')}; "
        f"memory {kafka.get('memory')}")
    rows = [Row(BENCH, f"bundled broker's planned restarts, {when} (budget {kafka['memory'].get('budget_mib')} MiB)",
                kafka["restarts_planned"], "restarts")]
    last = kafka.get("last_restart")
    if last:
        rows.append(Row(BENCH, f"bundled broker's last planned restart, {when}: the pipeline paused",
                        last["seconds"], "s"))
    return rows


def poll_until(done: Callable[[], bool], progress: Callable[[float], str], *, started: float, timeout: float,
               every: float, guard: MemoryGuard, what: str) -> float:
    """Seconds from ``started`` to ``done()`` first true, asked every ``every`` s; ``progress``
    logged every 30 s."""
    logged = time.perf_counter()
    while True:
        guard.check()
        if done():
            return time.perf_counter() - started
        now = time.perf_counter()
        if now - logged >= 30:
            logged = now
            log(progress(now - started))
        if now - started > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def at_head(status: dict[str, Any], head: int) -> bool:
    return status["position"] == head and status["refreshed_version"] in (status["version"], -1)


def views_ok(client: httpx.Client) -> bool:
    """``/healthz`` calls the views ok: every event up to the head in the served documents."""
    return healthz(client).get("components", {}).get("views", {}).get("status") == "ok"


def healthz(client: httpx.Client) -> dict[str, Any]:
    try:
        return orjson.loads(client.get("/healthz").content)
    except (httpx.HTTPError, orjson.JSONDecodeError):
        return {}


def platform_rows(when: str, root: int, processes: list[Process] | None = None) -> list[Row]:
    """Each process's peak RSS (``VmHWM``) by role, their sum, against the targets."""
    usages = usage_by_role([], processes if processes is not None else platform_processes(root))
    return peak_rows(when, {usage.role: (usage.processes, usage.peak_rss_mib) for usage in usages},
                     sum(usage.peak_rss_mib for usage in usages))


class PhasePeaks:
    """Each phase's own peak RSS, sampled every second by a thread: a process's peak
    (``VmHWM``) is reset between phases (``/proc/PID/clear_refs``: 5). A role's peak is the
    highest sum of its live processes' peaks at one sample, and the platform's the highest
    sum over every role: processes that replace one another (the bundled broker's planned
    restarts restart it, the relay and the worker) are not added up, and one that died in
    the phase still counts. CPU is kept per process as last seen, so a replaced process's
    CPU still counts in its role's."""

    def __init__(self, root: int, interval: float = 1.0):
        self.root = root
        self.interval = interval
        self._lock = threading.Lock()
        self._phase: dict[str, tuple[int, float]] = {}  # role -> (processes, highest sum of their peaks)
        self._phase_total = 0.0
        self._run: dict[str, tuple[int, float]] = {}
        self._run_total = 0.0
        self._cpu: dict[int, tuple[str, float]] = {}  # pid -> (role, CPU seconds when last seen)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_every_interval, name="phase-peaks", daemon=True)
        self._thread.start()

    def sample(self) -> list[Process]:
        processes = platform_processes(self.root)
        roles: dict[str, tuple[int, float]] = {}
        for process in processes:
            count, mib = roles.get(process.role, (0, 0.0))
            roles[process.role] = (count + 1, mib + process.peak_rss_mib)
        total = sum(mib for _, mib in roles.values())
        with self._lock:
            for process in processes:
                self._cpu[process.pid] = (process.role, process.cpu_seconds)
            for kept in (self._phase, self._run):
                for role, (count, mib) in roles.items():
                    if mib > kept.get(role, (0, 0.0))[1]:
                        kept[role] = (count, mib)
            self._phase_total = max(self._phase_total, total)
            self._run_total = max(self._run_total, total)
        return processes

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds each role spent so far, replaced processes included."""
        self.sample()
        with self._lock:
            spent: dict[str, float] = {}
            for role, seconds in self._cpu.values():
                spent[role] = spent.get(role, 0.0) + seconds
        return spent

    def next_phase(self, when: str) -> list[Row]:
        """The phase just ended: its rows, then every peak reset for the next one."""
        processes = self.sample()
        with self._lock:
            rows = peak_rows(when, self._phase, self._phase_total)
            for process in processes:
                try:
                    Path(f"/proc/{process.pid}/clear_refs").write_text("5")
                except OSError as error:
                    log(f"cannot reset the peak RSS of {process.role} ({process.pid}): {error}")
            self._phase, self._phase_total = {}, 0.0
        return rows

    def whole_run(self, when: str) -> list[Row]:
        self.sample()
        with self._lock:
            return peak_rows(when, self._run, self._run_total)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample_every_interval(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except OSError:  # the platform is stopping
                return


def peak_rows(when: str, roles: dict[str, tuple[int, float]], total: float) -> list[Row]:
    """Rows of each role's peak RSS (``platform_rows``' form) and the platform's."""
    known = {role: n for n, role in enumerate(ROLE_ORDER)}
    rows = []
    for role in sorted(roles, key=lambda role: (known.get(role, len(known)), role)):
        count, mib = roles[role]
        name = role if count == 1 else f"{role} ({count})"
        api = role == API
        rows.append(Row(BENCH, f"peak RSS, {when}: {name}", mib, "MiB",
                        target=f"<= {API_RSS_TARGET_MIB:,.0f} MiB" if api else "",
                        ok=mib <= API_RSS_TARGET_MIB if api else None))
    rows.append(Row(BENCH, f"peak RSS, {when}: whole platform (sum, broker included)", total, "MiB",
                    target=f"<= {PLATFORM_RSS_TARGET_MIB:,.0f} MiB", ok=total <= PLATFORM_RSS_TARGET_MIB))
    return rows


def verify(up: Up, guard: MemoryGuard) -> list[Row]:
    """``touchpoints verify --views --api URL``, once, within ``VERIFY_SECONDS``."""
    log("verify: every live document against a replay of the store (touchpoints verify --views --api)")
    env = bench_env(TOUCHPOINTS_DATA=str(up.data), TOUCHPOINTS_STORE="", TOUCHPOINTS_API_KEY=BENCH_ADMIN_KEY)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "consumers.cli.main", "verify", "--views", "--api", up.url,
                                "--format", "json", "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    guard.expendable = process
    ok: bool | None = None  # None: not done
    try:
        out, err = process.communicate(timeout=VERIFY_SECONDS)
        if process.returncode == -signal.SIGKILL:
            outcome = f"not done: killed, memory fell below {MEMORY_FLOOR_MIB:,} MiB available"
        else:
            ok = process.returncode == 0
            outcome = verify_success(out) if ok else f"DIFFERENT or failed (exit {process.returncode}): {verify_failure(out, err)}"
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        outcome = f"not done: the replay did not finish within {VERIFY_SECONDS:.0f} s"
    finally:
        guard.expendable = None
    seconds = time.perf_counter() - started
    log(f"verify: {outcome} ({seconds:.0f} s)")
    return [Row(BENCH, f"verify --views after catch-up: {outcome}", seconds, "s", ok=ok)]


def verify_success(out: bytes) -> str:
    """What a passed ``verify --views --format json`` says: equal, and at which attempt (an
    attempt before it that differed is named, and the whole report written to the log)."""
    try:
        report = orjson.loads(out)
    except ValueError:
        return "equal to a replay"
    earlier = report.get("earlier") or []
    if not earlier:
        return "equal to a replay"
    log(f"verify report: {out.decode(errors='replace')}")
    found = "; ".join(f"attempt {e['attempt']} at position {e['position']}: {', '.join(e['differing'])}" for e in earlier)
    return f"equal to a replay at attempt {report.get('attempts')} at position {report.get('position')} (differed: {found})"


def verify_failure(out: bytes, err: bytes) -> str:
    """What a failed ``verify --views --format json`` says: the views that differ, the position
    and attempts (the whole report is written to the bench's log), else the end of its output."""
    try:
        report = orjson.loads(out)
        differing = [view["name"] for view in report["views"] if not view["same"]]
    except (ValueError, KeyError, TypeError):
        return (out or err)[-400:].decode(errors="replace")
    log(f"verify report: {out.decode(errors='replace')}")
    return (f"{', '.join(differing) or 'none'} differ at position {report.get('position')} "
            f"after {report.get('attempts')} attempts")


# --- 3. live --------------------------------------------------------------------------------


@dataclass
class Freshness:
    """From each POST's answer to the views reflecting it, as ``/v1/views/status`` polls
    show: ``applied`` once the status position reaches the POST's last position,
    ``documents`` once the default documents were refreshed past the version seen then.
    Concurrent POSTs may be answered out of position order."""

    applied: list[float] = field(default_factory=list)  # seconds
    documents: list[float] = field(default_factory=list)
    _posted: list[tuple[float, int]] = field(default_factory=list)  # (answered_at, last position)
    _applied: deque = field(default_factory=deque)  # (answered_at, version the views had then)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def posted(self, answered_at: float, last_position: int) -> None:
        with self._lock:
            self._posted.append((answered_at, last_position))

    def observed(self, at: float, position: int | None, version: int, refreshed_version: int) -> None:
        with self._lock:
            if position is not None and self._posted:
                reached = [post for post in self._posted if post[1] <= position]
                self._posted = [post for post in self._posted if post[1] > position]
                for answered_at, _ in reached:
                    self.applied.append(max(at - answered_at, 0.0))
                    self._applied.append((answered_at, version))
            while self._applied and self._applied[0][1] <= refreshed_version:
                answered_at, _ = self._applied.popleft()
                self.documents.append(max(at - answered_at, 0.0))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._posted) + len(self._applied)


def due_times(started: float, count: int, interval: float) -> list[float]:
    """When each of ``count`` arrays is due: one every ``interval`` seconds from ``started``."""
    return [started + index * interval for index in range(count)]


def live(client: httpx.Client, url: str, data: Path, source: Path, guard: MemoryGuard) -> list[Row]:
    arrays = int(LIVE_SECONDS * LIVE_RATE / LIVE_ARRAY)
    needed = (LIVE_SENDERS + arrays) * LIVE_ARRAY
    with source.open("rb") as file:
        lines = [line.rstrip(b"\n") for line in itertools.islice(file, needed)]
    if len(lines) < needed:
        raise RuntimeError(f"{source} holds {len(lines):,} events, fewer than the {needed:,} needed")
    warm_up = warm_up_rows(client, url, data, json_arrays(lines[:LIVE_SENDERS * LIVE_ARRAY], LIVE_ARRAY), guard)
    lines = lines[LIVE_SENDERS * LIVE_ARRAY:]
    bodies = json_arrays(lines, LIVE_ARRAY)
    interval = LIVE_ARRAY / LIVE_RATE
    freshness = Freshness()
    done = threading.Event()
    reads: list[float] = []
    read_errors: list[str] = []
    errors: list[str] = []
    log(f"live: {len(lines):,} events of new customers, {LIVE_ARRAY} a POST every {interval * 1000:.0f} ms")

    def poll_status() -> None:
        with httpx.Client(base_url=url, timeout=30, headers=BENCH_HEADERS) as poller:
            deadline = None
            while True:
                status = views_status(poller)
                freshness.observed(time.perf_counter(), status["position"], status["version"],
                                   status["refreshed_version"])
                if done.is_set():
                    deadline = deadline or time.monotonic() + 60
                    if not freshness.pending or time.monotonic() > deadline:
                        return
                time.sleep(STATUS_POLL)

    def read_dashboard() -> None:
        with httpx.Client(base_url=url, timeout=30, headers=BENCH_HEADERS) as reader:
            for path in itertools.cycle(DEFAULT_DOCUMENTS):
                if done.is_set():
                    return
                sent = time.perf_counter()
                response = reader.get(path)
                if response.status_code == 200:
                    reads.append(time.perf_counter() - sent)
                else:
                    read_errors.append(f"GET {path}: {response.status_code}")
                time.sleep(max(0.0, sent + DASHBOARD_READ_INTERVAL - time.perf_counter()))

    started = time.perf_counter() + 0.5  # the senders are ready then
    schedule = iter(zip(due_times(started, len(bodies), interval), bodies))
    schedule_lock = threading.Lock()
    posts: list[float] = []  # seconds each POST took
    late: list[float] = []  # seconds after its due time, for arrays sent more than LATE_SECONDS late
    answers: list[int] = []  # events accepted, a POST each
    refusals: list[float] = []  # the Retry-After of each 429 answer

    def send() -> None:
        headers = {**BENCH_HEADERS, "content-type": "application/json"}
        with httpx.Client(base_url=url, timeout=60, headers=headers) as sender:
            while not errors and not guard.tripped:
                with schedule_lock:
                    item = next(schedule, None)
                if item is None:
                    return
                due, body = item
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                elif -wait > LATE_SECONDS:
                    late.append(-wait)
                sent = time.perf_counter()
                response = sender.post("/v1/events", content=body)
                while response.status_code == 429:  # refused, nothing stored: again after Retry-After, as a client
                    refusals.append(float(response.headers.get("Retry-After", 1)))
                    time.sleep(refusals[-1])
                    response = sender.post("/v1/events", content=body)
                answered = time.perf_counter()
                if response.status_code != 200:
                    errors.append(f"POST /v1/events answered {response.status_code}: {response.text[:300]}")
                    return
                answer = orjson.loads(response.content)
                answers.append(answer["accepted"])
                posts.append(answered - sent)
                freshness.posted(answered, max(result["position"] for result in answer["results"]))

    pauses_before = collector_pauses(client)
    refreshes_before = refresh_totals(client)
    readers = [threading.Thread(target=poll_status, name="status-poller"),
               threading.Thread(target=read_dashboard, name="dashboard-reader")]
    senders = [threading.Thread(target=send, name=f"sender-{n}") for n in range(LIVE_SENDERS)]
    for thread in readers + senders:
        thread.start()
    try:
        for thread in senders:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        done.set()
        for thread in readers:
            thread.join()
    guard.check()
    if errors:
        raise RuntimeError(errors[0])
    accepted = sum(answers)
    if accepted != len(lines):
        raise RuntimeError(f"the API accepted {accepted:,} of {len(lines):,} live events")
    unresolved = len(bodies) - len(freshness.documents)
    log(f"live: {accepted:,} events in {elapsed:.1f} s ({accepted / elapsed:,.0f} events/s), {len(late)} arrays sent "
        f"over {LATE_SECONDS * 1000:.0f} ms late (at most {max(late, default=0):.2f} s), {len(refusals)} refused; "
        f"{unresolved} POSTs not reflected in the documents within 60 s after the last" + (
            f"; dashboard reader errors: {read_errors[:3]}" if read_errors else ""))
    rows = warm_up + [
        Row(BENCH, f"live: POST /v1/events, {LIVE_ARRAY}-event arrays every {interval * 1000:.0f} ms for "
                   f"{elapsed:.0f} s (new customers)", accepted / elapsed, "events/s",
            target=f">= {LIVE_RATE * 0.95:,.0f} events/s", ok=accepted / elapsed >= LIVE_RATE * 0.95)]
    rows.append(Row(BENCH, "live: POSTs refused with 429 (sent again after Retry-After)", len(refusals), "POSTs"))
    rows += latency_rows(f"live: POST of {LIVE_ARRAY} events, sent to answered (429s included; {LIVE_SENDERS} clients)",
                         posts, None)
    rows += latency_rows("freshness: POST answered -> status position reached it (applied)", freshness.applied, None)
    rows += latency_rows("freshness: POST answered -> default documents refreshed past it", freshness.documents,
                         FRESHNESS_TARGET_MS)
    rows.append(Row(BENCH, "freshness: POSTs not in the documents 60 s after the last POST", unresolved, "POSTs",
                    target="= 0", ok=unresolved == 0))
    rows += latency_rows(f"default documents in turn during live ingest, every {DASHBOARD_READ_INTERVAL * 1000:.0f} ms",
                         reads, DOCUMENT_TARGET_MS)
    rows += collector_rows(pauses_before, collector_pauses(client))
    rows += refresh_rows(refreshes_before, refresh_totals(client))
    return rows


Pauses = dict[str, dict[int, tuple[int, float, float, int]]]  # collections, seconds, longest, collected


def metric_samples(client: httpx.Client) -> dict[str, float]:
    """The API's ``/metrics`` samples, by name with their labels (``name{label="v"}``)."""
    samples = {}
    for line in client.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def collector_pauses(client: httpx.Client) -> Pauses:
    """``{process: {generation: (collections, seconds, longest, collected)}}``: the API's from
    ``/metrics``, the worker's from ``/healthz`` (the stats it writes every second)."""
    found: Pauses = {"API": {}, "worker": {}}
    samples = metric_samples(client)
    for generation in range(3):
        names = [f'{name}{{generation="{generation}"}}' for name in (
            "touchpoints_gc_collections_total", "touchpoints_gc_pause_seconds_total", "touchpoints_gc_longest_pause_seconds",
            "touchpoints_gc_collected_objects_total")]
        if all(name in samples for name in names):
            collections, seconds, longest, collected = (samples[name] for name in names)
            found["API"][generation] = (int(collections), seconds, longest, int(collected))
    worker = (client.get("/healthz").json().get("components", {}).get("worker") or {}).get("collector") or {}
    found["worker"] = {g["generation"]: (g["collections"], g["seconds"], g["longest_seconds"], g.get("collected", 0))
                       for g in worker.get("generations", [])}
    return found


def collector_rows(before: Pauses, after: Pauses) -> list[Row]:
    """The cyclic collector during the live phase, by process and generation: collections,
    the unreachable objects they freed, seconds paused in all, and the longest pause since
    the process started."""
    rows = []
    for process, generations in after.items():
        for generation, (collections, seconds, longest, collected) in sorted(generations.items()):
            was = before.get(process, {}).get(generation, (0, 0.0, 0.0, 0))
            rows.append(Row(BENCH, f"live: {process} collector, generation {generation}: {collections - was[0]:,} "
                                   f"collections freeing {collected - was[3]:,} objects, seconds paused in all "
                                   f"(longest pause since start {longest * 1000:.0f} ms)", seconds - was[1], "s"))
    return rows


def refresh_totals(client: httpx.Client) -> dict[str, float]:
    """The API's refreshes of the default documents so far (``/metrics``): how many, their
    seconds by part (waiting for the views' lock, computing, encoding), the longest one."""
    samples = metric_samples(client)
    totals = {"refreshes": samples.get("touchpoints_views_refreshes_total", 0.0),
              "longest": samples.get("touchpoints_views_longest_refresh_seconds", 0.0)}
    for part in ("waiting", "computing", "encoding"):
        totals[part] = samples.get(f'touchpoints_views_refresh_seconds_total{{part="{part}"}}', 0.0)
    return totals


def refresh_rows(before: dict[str, float], after: dict[str, float]) -> list[Row]:
    """The refreshes during the live phase: the documents' freshness is their seconds."""
    refreshes = after.get("refreshes", 0) - before.get("refreshes", 0)
    rows = [Row(BENCH, "live: API refreshes of the default documents", refreshes, "refreshes")]
    for part in ("waiting", "computing", "encoding"):
        spent = after.get(part, 0.0) - before.get(part, 0.0)
        what = "waiting for the views' lock" if part == "waiting" else part
        rows.append(Row(BENCH, f"live: API refresh, {what}, a refresh on average",
                        spent / refreshes * 1000 if refreshes else 0.0, "ms"))
    rows.append(Row(BENCH, "live: API longest refresh since start", after.get("longest", 0.0) * 1000, "ms"))
    return rows


def warm_up_rows(client: httpx.Client, url: str, data: Path, bodies: list[bytes], guard: MemoryGuard) -> list[Row]:
    """The first POSTs after the start, outside the live figures (one a sender, at once: the
    API's pool starts a decoding worker for each; the writer loads its id index at its first
    append), then the wait until the views hold them."""
    started = time.perf_counter()
    post_concurrently(url, bodies, clients=len(bodies))
    answered = time.perf_counter() - started
    head = store_head(data)
    seen = poll_until(lambda: at_head(views_status(client), head), lambda elapsed: "live: warming up",
                      started=started, timeout=300, every=STATUS_POLL, guard=guard,
                      what="the warm-up POSTs in the views")
    log(f"live warm-up: {len(bodies)} first POSTs answered after {answered:.2f} s, in the views after {seen:.2f} s")
    return [Row(BENCH, f"live warm-up (not in the figures below): {len(bodies)} first POSTs at once, answered",
                answered, "s"),
            Row(BENCH, "live warm-up: ... and in the refreshed default documents", seen, "s")]


def latency_rows(what: str, seconds: list[float], target_ms: float | None) -> list[Row]:
    """p50, p99 (against ``target_ms``, if any) and max of ``seconds``, in ms."""
    target = f"< {target_ms:,.0f} ms" if target_ms is not None else ""
    if not seconds:
        return [Row(BENCH, f"{what}: none answered", float("nan"), "ms", target=target, ok=False)]
    p50, p99, high = (numpy.percentile(seconds, q) * 1000 for q in (50, 99, 100))
    return [Row(BENCH, f"{what}: p50 ({len(seconds):,})", p50, "ms"),
            Row(BENCH, f"{what}: p99", p99, "ms", target=target, ok=p99 < target_ms if target_ms is not None else None),
            Row(BENCH, f"{what}: max", high, "ms")]


# --- 4. queries -----------------------------------------------------------------------------


def queries(client: httpx.Client) -> list[Row]:
    """``GETS`` GETs of each default document, and of each parameterised query (a new window each)."""
    rows: list[Row] = []
    for path in DEFAULT_DOCUMENTS:
        rows += latency_rows(f"GET {path}", timed_gets(client, [path] * GETS), DOCUMENT_TARGET_MS)
    parameterised = {
        **{f"/v1/attribution?model={model}&lookback_days=30": "attribution, " + model
           for model in ("linear", "time_decay", "markov", "shapley")},
        "/v1/first-contact?": "first contact",
    }
    for prefix, name in parameterised.items():
        paths = [f"{prefix}{'' if prefix.endswith('?') else '&'}{window(shift)}" for shift in range(GETS)]
        seconds = timed_gets(client, paths, cap=QUERY_SECONDS_CAP)
        rows += latency_rows(f"{name}, a one-year window (from/to), each GET another window", seconds,
                             QUERY_TARGET_MS)
    return rows


def window(shift_days: int) -> str:
    from datetime import date, timedelta

    start = date(*WINDOW_START) + timedelta(days=shift_days)
    return f"from={start.isoformat()}&to={start.replace(year=start.year + 1).isoformat()}"


def timed_gets(client: httpx.Client, paths: list[str], *, cap: float | None = None) -> list[float]:
    """Seconds each GET took (one after another), stopping early once ``cap`` seconds passed."""
    seconds = []
    started = time.perf_counter()
    for path in paths:
        sent = time.perf_counter()
        response = client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        seconds.append(time.perf_counter() - sent)
        if cap is not None and time.perf_counter() - started > cap:
            log(f"GET {path.split('?')[0]}: stopped after {len(seconds)} GETs ({cap:.0f} s)")
            break
    log(f"GET {paths[0]}: p50 {numpy.percentile(seconds, 50) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms "
        f"over {len(seconds)}")
    return seconds


# --- 5. restart -----------------------------------------------------------------------------


def documents_at_head(client: httpx.Client, data: Path, guard: MemoryGuard) -> tuple[int, dict[str, bytes]]:
    """The store's head once the views reached it, and every default document served then."""
    head = store_head(data)
    deadline = time.monotonic() + 300
    while not at_head(views_status(client), head):
        guard.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the views did not reach the head {head:,} after the live phase")
        time.sleep(0.1)
    reference = {}
    for path in DEFAULT_DOCUMENTS:
        response = client.get(path)
        if response.headers.get("X-Touchpoints-Position") != str(head):
            raise RuntimeError(f"GET {path} reflects {response.headers.get('X-Touchpoints-Position')}, not {head}")
        reference[path] = response.content
    return head, reference


RESTART_STORY = ("saved (", "handed over", "not handed over", "restore on the journeys handed over",
                 "restored journeys", "views state taken up", "starting after position", "republishing",
                 "rebuilding partition")


def restart_story(folder: Path) -> list[str]:
    """The log lines of the stop and the restart that say what was saved and taken up."""
    lines = []
    for name in ("up.log", "data/run/worker.log", "data/run/relay.log"):
        path = folder / name
        if path.exists():
            lines += [f"{name}: {line.strip()[:220]}" for line in path.read_text(errors="replace").splitlines()
                      if any(mark in line for mark in RESTART_STORY)]
    return lines


def restart(folder: Path, env: dict[str, str], head: int, reference: dict[str, bytes],
            guard: MemoryGuard, *, stopped: list[float] | None = None,
            headers: dict[str, str] = BENCH_HEADERS) -> list[Row]:
    """``touchpoints up`` again on the same folder: seconds from its spawn to the first correct
    funnel and to ``/healthz``'s views ok; then every default document against ``reference``.
    ``stopped`` gets the seconds from the SIGTERM that ends it to its exit; ``headers``: the
    admin key's (a kept folder's access store holds the key of the run that made it)."""
    funnel = "/v1/funnel"
    started = time.perf_counter()
    first: list[float] = []  # seconds to the first correct funnel, once seen
    answered: list[float] = []  # seconds to the first answer of a query only the live views answer
    with Up(folder, env=env, healthy_within=None, stop_signal=signal.SIGTERM, stop_within=STOP_SECONDS) as up:
        guard.root = up.pid
        listening = time.perf_counter() - started
        with httpx.Client(base_url=up.url, timeout=30, headers=headers) as client:
            views: dict[str, Any] = {}

            def views_ok() -> bool:
                response = client.get(funnel)
                views.clear()  # a key of an earlier answer (``live`` while restored) must not linger
                views.update(healthz(client).get("components", {}).get("views", {}))
                if not first and response.status_code == 200 and response.content == reference[funnel] \
                        and response.headers.get("X-Touchpoints-Position") == str(head):
                    first.append(time.perf_counter() - started)
                    log(f"restart: first correct {funnel} after {first[0]:.2f} s")
                if not answered and client.get("/v1/attribution", params=WINDOWED).status_code == 200:
                    answered.append(time.perf_counter() - started)
                    log(f"restart: every query answered (the live views serve) after {answered[0]:.2f} s")
                return views.get("status") == "ok"

            def progress(elapsed: float) -> str:
                return f"restart: views {views.get('status')}, live {views.get('live')}, after {elapsed:.0f} s; " \
                       f"RSS {rss_by_role(up.pid)}"

            rebuilt = poll_until(views_ok, progress, started=started, timeout=900 + head / 5_000, every=RESTART_POLL,
                                 guard=guard, what="the restarted views ok on /healthz")
            equal = sum(client.get(path).content == document for path, document in reference.items())
            rows = platform_rows("restarted, at views ok", up.pid)
        guard.root = None
        stopping = time.perf_counter()  # ``Up`` sends SIGTERM on leaving
    if stopped is not None:
        stopped.append(time.perf_counter() - stopping)
    log(f"restart: views ok after {rebuilt:.1f} s; {equal} of {len(reference)} default documents as before")
    for line in restart_story(folder):
        log(f"restart log: {line}")
    return [
        Row(BENCH, "restart: spawn -> listening", listening, "s"),
        Row(BENCH, f"restart: spawn -> first correct {funnel} (bytes as before, position = head)",
            first[0] if first else float("nan"), "s", target=f"< {RESTART_TARGET_SECONDS:.0f} s",
            ok=bool(first) and first[0] < RESTART_TARGET_SECONDS),
        Row(BENCH, "restart: spawn -> every query answered (windowed attribution: the live views serve)",
            answered[0] if answered else float("nan"), "s", target=f"< {RESTART_TARGET_SECONDS:.0f} s",
            ok=bool(answered) and answered[0] < RESTART_TARGET_SECONDS),
        Row(BENCH, "restart: spawn -> /healthz views ok (the pipeline at the head again)", rebuilt, "s",
            target=f"< {RESTART_TARGET_SECONDS:.0f} s", ok=rebuilt < RESTART_TARGET_SECONDS),
        Row(BENCH, "restart: default documents equal to those before the stop, at views ok", equal, "documents",
            target=f"= {len(reference)}", ok=equal == len(reference)),
    ] + rows
