"""bench/pipeline: the whole platform as a user runs it, at two population sizes.

For each population (scale 1.0: 10,000 and 100,000 customers, ~10.5 events each; at any
scale at least 1,000 and 10,000), in one run:

1. ``touchpoints up`` starts in a subprocess (the real CLI) on a fresh data folder, with
   the bundled broker, no demo data and a free port (read from what it prints); the bench
   waits until ``/healthz`` reports every component ok.
2. The demo journeys of that population (``application.demo.generate``, as bench/ingest)
   are POSTed to ``/v1/events`` as wire JSON, in arrays of 1,000, by 4 concurrent clients
   (``bench.http_load``). The first four arrays, one a client, are a warm-up outside
   every figure: they start the API's decoding workers (a pool that spawns them on
   demand) and the first folds, and the bench waits until the views hold them.
3. The clock stops when the live views equal what the CLI computes from the store: after
   the last POST ``/v1/views/status`` is polled every 20 ms; once it reports the store's
   head position with its precomputed views refreshed, and has stood still for a second,
   ``application.verify_views.compare_with_api`` compares every ``/v1`` document with a
   replay of the store up to that position. The stop time is when the status that
   comparison confirmed was first seen (the second of stillness and the replay are not
   counted).

Figures, over the events after the warm-up: HTTP ingest (events / first POST to last POST
answered), end to end (events / first POST to views equal), the time from the last POST
answered to views equal; and for every process under ``touchpoints up`` (the API process
itself, its decoding workers, the relay, the worker, the bundled tansu broker, anything else
found there), grouped by role, the CPU time (utime + stime from ``/proc/<pid>/stat``, first
POST to views equal) per event, their sum, and peak RSS (``VmHWM``). A process that started
in the interval counts from zero. The bench process's own CPU while it POSTs (the load
generator shares the two cores) is shown beside them, outside the sum.

Targets: end to end >= 15,000 events/s and the summed CPU <= 120 us an event at the small
population (issue 15); end to end and HTTP ingest at the large population >= 0.8x the
small one's, measured in the same run (issue 14).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from bench.common import Row
from bench.http_load import BENCH_ADMIN_KEY, BENCH_HEADERS, bench_env, json_arrays, post_concurrently

BENCH = "pipeline"
SMALL_CUSTOMERS, LARGE_CUSTOMERS = 10_000, 100_000
SMALL_FLOOR, LARGE_FLOOR = 1_000, 10_000
ARRAY = 1_000
CLIENTS = 4
WARM_UP_ARRAYS = CLIENTS  # at once: the API's pool spawns each of its decoding workers
END_TO_END_TARGET = 15_000  # events/s at the small population
CPU_TARGET_US = 120.0  # summed over the platform, an event, at the small population
GROWTH_TARGET = 0.8  # large population / small population
POLL_SECONDS = 0.02
STILL_SECONDS = 1.0
ROOT = Path(__file__).resolve().parent.parent

API = "touchpoints up (the API process)"
DECODERS = "HTTP decoding workers"
BROKER = "bundled broker (tansu)"
ROLE_ORDER = [API, DECODERS, "touchpoints relay", "touchpoints worker", BROKER]


def run(scale: float) -> list[Row]:
    small = measure_platform(max(SMALL_FLOOR, round(SMALL_CUSTOMERS * scale)))
    large = measure_platform(max(LARGE_FLOOR, round(LARGE_CUSTOMERS * scale)))
    return pipeline_rows(small, large)


# --- one population ------------------------------------------------------------------------


@dataclass
class PlatformRun:
    customers: int
    events: int  # measured: posted after the warm-up arrays
    http_seconds: float  # first POST to last POST answered
    end_to_end_seconds: float  # first POST to views equal
    usage: list["RoleUsage"]
    load_generator_cpu_seconds: float

    @property
    def label(self) -> str:
        return f"{self.customers:,} customers ({self.events:,} events)"

    @property
    def http_rate(self) -> float:
        return self.events / self.http_seconds

    @property
    def end_to_end_rate(self) -> float:
        return self.events / self.end_to_end_seconds

    @property
    def catch_up_seconds(self) -> float:
        return self.end_to_end_seconds - self.http_seconds

    def cpu_us_per_event(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.events * 1e6


def measure_platform(customers: int) -> PlatformRun:
    """Start ``touchpoints up``, POST the demo journeys of ``customers``, stop at views equal."""
    from application.demo import generate
    from application.settings import default_sqlite_url
    from events.factory import open_store

    lines = [orjson.dumps(event) for event in generate(customers, seed=1)]
    warm_up = WARM_UP_ARRAYS * ARRAY
    if len(lines) <= warm_up:
        raise ValueError(f"{customers} customers give {len(lines)} events: nothing to measure after the warm-up")
    events = len(lines) - warm_up
    bodies = json_arrays(lines, ARRAY)
    del lines
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder, Up(Path(folder)) as up:
        store = open_store(default_sqlite_url(up.data))
        try:
            with httpx.Client(base_url=up.url, timeout=60, headers=BENCH_HEADERS) as client:
                post_concurrently(up.url, bodies[:WARM_UP_ARRAYS], clients=WARM_UP_ARRAYS)
                _wait_views_equal(client, up.url, store, timeout=180, sample=lambda: None)
                before = platform_processes(up.pid)
                started, load_cpu = time.perf_counter(), time.process_time()
                accepted = post_concurrently(up.url, bodies[WARM_UP_ARRAYS:], clients=CLIENTS)
                posted, load_cpu = time.perf_counter(), time.process_time() - load_cpu
                del bodies  # the replay that compares the views needs the memory more
                if accepted != events:
                    raise RuntimeError(f"the API accepted {accepted:,} of {events:,} events")
                equal_at, after = _wait_views_equal(client, up.url, store, timeout=300 + events / 1_000,
                                                    sample=lambda: platform_processes(up.pid))
        finally:
            store.close()
    return PlatformRun(customers, events, posted - started, equal_at - started, usage_by_role(before, after),
                       load_cpu)


Sample = TypeVar("Sample")


def _wait_views_equal(client: httpx.Client, url: str, store: Any, *, timeout: float,
                      sample: Callable[[], Sample]) -> tuple[float, Sample]:
    """The ``perf_counter`` time at which the views first showed the state a replay of the
    whole store then confirmed, and what ``sample()`` returned at that moment."""
    from application.verify_views import LiveViewsUnavailable, compare_with_api

    head = store.head_position()
    deadline = time.monotonic() + timeout
    seen: tuple[dict[str, Any], float, Sample] | None = None  # a status at the head: when first seen
    compared: dict[str, Any] | None = None
    differing: list[str] = []
    while time.monotonic() < deadline:
        status = views_status(client)
        now = time.perf_counter()
        if status["position"] == head and status["refreshed_version"] in (status["version"], -1):
            if seen is None or seen[0] != status:
                seen = (status, now, sample())
            elif now - seen[1] >= STILL_SECONDS and status != compared:
                compared = status
                try:
                    comparison = compare_with_api(store, url, api_key=BENCH_ADMIN_KEY, attempts=1)
                except LiveViewsUnavailable:
                    compared = None  # they moved while read: compare again
                    continue
                if comparison.same and comparison.position == head and views_status(client) == status:
                    return seen[1], seen[2]
                differing = comparison.differing
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"the live views did not equal a replay of the store (head {head}) within {timeout:.0f} s"
                       + (f"; differing at the head: {', '.join(differing)}" if differing else "")
                       + f"; /healthz: {_unhealthy(client)}")


def views_status(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/views/status")
    response.raise_for_status()
    status = orjson.loads(response.content)
    return {key: status.get(key) for key in ("position", "version", "refreshed_version")}


def _unhealthy(client: httpx.Client) -> str:
    """The components ``/healthz`` reports as not ok, with their reports (or "all ok")."""
    components = orjson.loads(client.get("/healthz").content).get("components", {})
    unhealthy = {name: report for name, report in components.items() if report.get("status") != "ok"}
    return orjson.dumps(unhealthy).decode() if unhealthy else "all ok"


class Up:
    """``touchpoints up`` in a subprocess on ``folder/data``, its output in ``folder/up.log``,
    with ``env`` added to its environment; entered once it listens and (unless
    ``healthy_within`` is None) ``/healthz`` reports every component ok; stopped on exit
    with ``stop_signal`` (Ctrl-C's by default; then killed, with what it started, if it hangs)."""

    def __init__(self, folder: Path, *, env: dict[str, str] | None = None, healthy_within: float | None = 120,
                 stop_signal: int = signal.SIGINT, stop_within: float = 60.0):
        self.data = folder / "data"
        self.log_path = folder / "up.log"
        self.env = env or {}
        self.healthy_within = healthy_within
        self.stop_signal = stop_signal
        self.stop_within = stop_within  # the views' state is saved on a clean stop: seconds at a million customers
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> "Up":
        env = bench_env(TOUCHPOINTS_DATA=str(self.data), TOUCHPOINTS_DEMO="0", TOUCHPOINTS_PORT="0",
                        TOUCHPOINTS_HOST="127.0.0.1", TOUCHPOINTS_KAFKA="", TOUCHPOINTS_STORE="", **self.env)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "consumers.cli.main", "up"], cwd=ROOT, env=env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            self.url = self._wait_for(self._listening_url, 60, "to print where it listens")
            if self.healthy_within is not None:
                with httpx.Client(base_url=self.url, timeout=10, headers=BENCH_HEADERS) as client:
                    self._wait_for(lambda: self._healthy(client), self.healthy_within,
                                   "to report every component ok on /healthz")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        started = platform_processes(self.pid)
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(self.stop_within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for process in started[1:]:  # the broker does not die with its parent
            if process.alive():
                os.kill(process.pid, signal.SIGKILL)

    def _wait_for(self, found: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"touchpoints up exited ({self.process.returncode}): {self._log_tail()}")
            result = found()
            if result:
                return result
            time.sleep(0.1)
        raise RuntimeError(f"touchpoints up did not manage {what} within {timeout:.0f} s: {self._log_tail()}")

    def _listening_url(self) -> str | None:
        match = re.search(rb"listening on (http://\S+)", self.log_path.read_bytes())
        return match.group(1).decode() if match else None

    @staticmethod
    def _healthy(client: httpx.Client) -> bool:
        try:
            return client.get("/healthz").json().get("status") == "ok"
        except (httpx.HTTPError, ValueError):
            return False

    def _log_tail(self, size: int = 2000) -> str:
        return self.log_path.read_bytes()[-size:].decode(errors="replace")


# --- the processes under touchpoints up, from /proc ------------------------------------------


@dataclass(frozen=True)
class Process:
    pid: int
    role: str
    cmdline: tuple[str, ...]
    cpu_seconds: float  # utime + stime so far
    peak_rss_mib: float  # VmHWM

    def alive(self) -> bool:
        """Still this process (not a reused pid) and not a zombie."""
        try:
            return _cmdline(self.pid) == self.cmdline and _stat_fields(self.pid)[0] != "Z"
        except OSError:
            return False


@dataclass
class RoleUsage:
    role: str
    processes: int = 0
    cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0

    @property
    def name(self) -> str:
        return self.role if self.processes == 1 else f"{self.role} ({self.processes})"


def platform_processes(root: int) -> list[Process]:
    """``root`` (as the API) and every process below it, parents first; a process that
    exits while being read is left out."""
    found: list[Process] = []
    pending: list[tuple[int, str | None]] = [(root, None)]
    root_cmdline: tuple[str, ...] | None = None
    while pending:
        pid, parent_role = pending.pop(0)
        try:
            cmdline = _cmdline(pid)
            if parent_role is None:
                root_cmdline = cmdline
            elif cmdline == root_cmdline:
                continue  # forked, not exec'd yet: its resident pages are the parent's
            role = API if parent_role is None else process_role(cmdline, parent_role)
            found.append(Process(pid, role, cmdline, cpu_seconds(pid), peak_rss_mib(pid)))
            pending.extend((child, role) for child in children(pid))
        except OSError:
            continue
    return found


def process_role(cmdline: tuple[str, ...], parent_role: str) -> str:
    """What a process under ``touchpoints up`` is, from its command line."""
    if "consumers.cli.main" in cmdline:
        command = cmdline[cmdline.index("consumers.cli.main") + 1 :]
        return f"touchpoints {command[0]}" if command else "touchpoints"
    if cmdline and Path(cmdline[0]).name.startswith("tansu"):
        return BROKER
    text = " ".join(cmdline)
    if "multiprocessing.spawn" in text or "--multiprocessing-fork" in cmdline:
        return DECODERS if parent_role == API else f"{parent_role}: pool workers"
    if "multiprocessing.resource_tracker" in text:
        return f"{parent_role.split(' (')[0]}: multiprocessing resource tracker"
    return Path(cmdline[0]).name if cmdline else "(unnamed)"


def usage_by_role(before: list[Process], after: list[Process]) -> list[RoleUsage]:
    """CPU each role spent from ``before`` to ``after`` (a process not in ``before`` from
    zero) and the sum of its processes' peaks, in ``ROLE_ORDER`` then by name."""
    started = {process.pid: process.cpu_seconds for process in before}
    roles: dict[str, RoleUsage] = {}
    for process in after:
        usage = roles.setdefault(process.role, RoleUsage(process.role))
        usage.processes += 1
        usage.cpu_seconds += process.cpu_seconds - started.get(process.pid, 0.0)
        usage.peak_rss_mib += process.peak_rss_mib
    known = {role: n for n, role in enumerate(ROLE_ORDER)}
    return sorted(roles.values(), key=lambda usage: (known.get(usage.role, len(known)), usage.role))


def children(pid: int) -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass  # the thread just ended
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), in seconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """``VmHWM``, the process's peak resident memory (0 for a zombie, which has none)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cmdline(pid: int) -> tuple[str, ...]:
    return tuple(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1])


# --- the table ---------------------------------------------------------------------------


def pipeline_rows(small: PlatformRun, large: PlatformRun) -> list[Row]:
    small_e2e, small_http = f"end to end, {small.customers:,} customers", f"HTTP ingest, {small.customers:,} customers"
    rows = [
        Row(BENCH, f"end to end, {small.label}: first POST -> views equal a replay", small.end_to_end_rate,
            "events/s", target=f">= {END_TO_END_TARGET:,} events/s", ok=small.end_to_end_rate >= END_TO_END_TARGET),
        Row(BENCH, f"end to end, {large.label}", large.end_to_end_rate, "events/s", small_e2e,
            small.end_to_end_rate, f">= {GROWTH_TARGET}x",
            large.end_to_end_rate >= GROWTH_TARGET * small.end_to_end_rate),
        Row(BENCH, f"HTTP ingest, {small.label}: {CLIENTS} clients x {ARRAY:,}-event arrays, to last answer",
            small.http_rate, "events/s"),
        Row(BENCH, f"HTTP ingest, {large.label}", large.http_rate, "events/s", small_http, small.http_rate,
            f">= {GROWTH_TARGET}x", large.http_rate >= GROWTH_TARGET * small.http_rate),
    ]
    for run_ in (small, large):
        rows.append(Row(BENCH, f"last POST answered -> views equal, {run_.customers:,} customers",
                        run_.catch_up_seconds, "s"))
    for run_ in (small, large):
        where = f"{run_.customers:,} customers"
        for usage in run_.usage:
            rows.append(Row(BENCH, f"CPU per event, {where}: {usage.name}", run_.cpu_us_per_event(usage.cpu_seconds),
                            "us/event"))
        total = run_.cpu_us_per_event(sum(usage.cpu_seconds for usage in run_.usage))
        target = run_ is small
        rows.append(Row(BENCH, f"CPU per event, {where}: whole platform (sum of the above)", total, "us/event",
                        target=f"<= {CPU_TARGET_US:.0f} us" if target else "",
                        ok=total <= CPU_TARGET_US if target else None))
        rows.append(Row(BENCH, f"CPU per event, {where}: load generator (this process, not in the sum)",
                        run_.cpu_us_per_event(run_.load_generator_cpu_seconds), "us/event"))
        for usage in run_.usage:
            rows.append(Row(BENCH, f"peak RSS, {where}: {usage.name}", usage.peak_rss_mib, "MiB"))
        rows.append(Row(BENCH, f"peak RSS, {where}: whole platform (sum)",
                        sum(usage.peak_rss_mib for usage in run_.usage), "MiB"))
    return rows
