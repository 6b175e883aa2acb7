"""bench/pipeline.py: its /proc readers, the roles it names, the table it prints (no timing
is asserted), and one tiny run of the real platform."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.pipeline import (
    API,
    BROKER,
    DECODERS,
    PlatformRun,
    Process,
    RoleUsage,
    cpu_seconds,
    measure_platform,
    peak_rss_mib,
    pipeline_rows,
    platform_processes,
    process_role,
    usage_by_role,
)


def test_cpu_seconds__reads_the_cpu_time_this_process_measures_itself():
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass  # spend some CPU, so the reading is not zero

    assert cpu_seconds(os.getpid()) == pytest.approx(time.process_time(), abs=0.05)


def test_peak_rss_mib__of_this_process_is_at_least_what_it_holds_now():
    with open(f"/proc/{os.getpid()}/status") as status:
        resident_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    assert peak_rss_mib(os.getpid()) >= resident_kib / 1024 > 0


def test_platform_processes__finds_a_grandchild_below_the_root_with_its_role():
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            found = {process.pid: process for process in platform_processes(os.getpid())}
            sleeping = [process for process in found.values() if process.cmdline == ("sleep", "30")]
            if sleeping or time.monotonic() > deadline:
                break
            time.sleep(0.02)

        assert found[os.getpid()].role == API
        assert found[shell.pid].role == "sh"
        assert [process.role for process in sleeping] == ["sleep"]
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


def test_process_role__names_the_platform_s_processes_from_their_command_lines():
    python = sys.executable
    spawn = (python, "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5, pipe_handle=7)",
             "--multiprocessing-fork")

    assert process_role((python, "-m", "consumers.cli.main", "relay", "--stats-interval", "30"), API) \
        == "touchpoints relay"
    assert process_role((python, "-m", "consumers.cli.main", "worker"), API) == "touchpoints worker"
    assert process_role(("/opt/tansu/tansu", "broker", "--listener-url", "tcp://127.0.0.1:1"), API) == BROKER
    assert process_role(spawn, API) == DECODERS
    assert process_role(spawn, "touchpoints worker") == "touchpoints worker: pool workers"


def test_usage_by_role__sums_each_role_from_the_first_reading_and_a_new_process_from_zero():
    before = [Process(1, API, (), 10.0, 100.0), Process(2, DECODERS, (), 1.0, 50.0)]
    after = [Process(1, API, (), 12.5, 120.0), Process(2, DECODERS, (), 1.5, 60.0),
             Process(3, DECODERS, (), 0.25, 55.0), Process(4, "touchpoints worker", (), 3.0, 80.0)]

    usage = usage_by_role(before, after)

    assert [(u.name, u.cpu_seconds, u.peak_rss_mib) for u in usage] == [
        (API, 2.5, 120.0), (f"{DECODERS} (2)", 0.75, 115.0), ("touchpoints worker", 3.0, 80.0)]


def _run(customers: int, events: int, end_to_end_seconds: float, api_cpu_seconds: float) -> PlatformRun:
    usage = [RoleUsage(API, 1, api_cpu_seconds, 500.0), RoleUsage(BROKER, 1, 0.5, 200.0)]
    return PlatformRun(customers, events, end_to_end_seconds / 2, end_to_end_seconds, usage, 0.1)


def test_pipeline_rows__print_every_target_met_or_not_beside_the_small_population():
    small = _run(10_000, 100_000, 5.0, 5.0)  # 20,000 events/s; 55 us an event in all
    large = _run(100_000, 1_000_000, 100.0, 100.0)  # 10,000 events/s: half the small one's

    rows = {row.case: row for row in pipeline_rows(small, large)}

    assert rows["end to end, 10,000 customers (100,000 events): first POST -> views equal a replay"].ok is True
    grown = rows["end to end, 100,000 customers (1,000,000 events)"]
    assert (grown.ratio, grown.target, grown.ok) == (0.5, ">= 0.8x", False)
    assert rows["CPU per event, 10,000 customers: whole platform (sum of the above)"].value == pytest.approx(55.0)
    assert rows["CPU per event, 10,000 customers: whole platform (sum of the above)"].ok is True
    assert rows["CPU per event, 100,000 customers: whole platform (sum of the above)"].target == ""
    assert rows[f"peak RSS, 100,000 customers: {BROKER}"].value == 200.0


@pytest.mark.slow
def test_measure_platform__a_tiny_population_through_touchpoints_up_gives_every_figure():
    run = measure_platform(500)  # ~5,200 events: 4,000 warm up

    assert run.events > 0 and 0 < run.http_seconds < run.end_to_end_seconds
    roles = {usage.role for usage in run.usage}
    assert {API, DECODERS, "touchpoints relay", "touchpoints worker", BROKER} <= roles
    assert all(usage.peak_rss_mib > 0 for usage in run.usage)


def test_platform_processes__a_child_forked_and_not_yet_exec_d_is_not_counted():
    import subprocess
    import sys
    import time

    from bench.pipeline import platform_processes

    # given a root process that forked a child which has not exec'd (it shares the root's pages)
    root = subprocess.Popen([sys.executable, "-c", "import os, time\nif os.fork() == 0:\n    time.sleep(30)\n"
                                                   "time.sleep(30)\n"])
    try:
        time.sleep(0.5)
        # when the platform's processes are listed
        found = platform_processes(root.pid)
    finally:
        root.kill()
        root.wait()
    # then only the root is
    assert [process.pid for process in found] == [root.pid]
