"""Children die with their supervisor: ``touchpoints up`` killed with SIGKILL (no cleanup runs)
takes its bundled broker, relay, worker and any other process it started along."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.parent_death import die_with_parent

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def process_state(pid: int) -> str | None:
    """The state letter from /proc (R, S, Z...), or None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2]


def alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z")  # a zombie has exited: only its entry waits to be reaped


def parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            found[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return found


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below ``root``."""
    links = parents()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in links.items():
            if ppid == parent and pid not in found:
                try:
                    found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                frontier.append(pid)
    return found


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def start_up(folder: Path) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TOUCHPOINTS_DATA": str(folder / "data"),
                   "TOUCHPOINTS_PORT": "0", "TOUCHPOINTS_DEMO_CUSTOMERS": "20", "TOUCHPOINTS_LOG_LEVEL": "WARNING"}
    for variable in ("TOUCHPOINTS_STORE", "TOUCHPOINTS_KAFKA"):
        environment.pop(variable, None)
    return subprocess.Popen([sys.executable, "-m", "consumers.cli.main", "up"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=environment, cwd=folder)


def test_up_killed_with_sigkill__its_broker_relay_and_worker_are_gone_within_seconds(tmp_path):
    # given `touchpoints up` running with its bundled broker, relay and worker
    up = start_up(tmp_path)
    children: dict[int, str] = {}
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            assert line, f"touchpoints up stopped before listening: {''.join(lines)}"
            lines.append(line)
            if re.search(r"listening on http://", line):
                break
        children = descendants(up.pid)
        commands = " | ".join(children.values())
        assert "tansu" in commands and " relay" in commands and " worker" in commands, commands

        # when it is killed without a chance to stop them
        os.kill(up.pid, signal.SIGKILL)
        up.wait(10)

        # then every process it started is gone within seconds
        left = wait_gone(list(children), timeout=10)
        assert not left, f"still running after the supervisor died: {[children[pid] for pid in left]}"
    finally:
        up.kill()
        up.wait()
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_parent_gone_before_the_request__the_child_kills_itself_before_it_runs():
    # given a preexec function for a parent the child will not find (as if it had died meanwhile)
    preexec = die_with_parent(parent=os.getpid() + 4_000_000)

    # when a long-running child is started through it
    child = subprocess.Popen(["sleep", "60"], preexec_fn=preexec)

    # then it ends at once, by the signal it would have got
    assert child.wait(10) == -signal.SIGKILL


def test_starting_thread__a_child_it_started_outlives_the_thread_that_asked_and_dies_when_it_closes():
    import threading

    from streams.parent_death import StartingThread

    # given a starting thread, and a short-lived thread that asks it to start a child
    starter = StartingThread("test-starter")
    started: list[subprocess.Popen] = []

    def ask() -> None:
        started.append(starter.run(lambda: subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent())))

    asking = threading.Thread(target=ask)
    asking.start()
    asking.join()
    child = started[0]
    try:
        # when the asking thread has ended, then the child lives on
        time.sleep(0.2)
        assert alive(child.pid)
        # when the starting thread closes, then the child gets its parent-death signal
        starter.close()
        assert child.wait(5) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()


def test_starting_thread__hands_the_caller_the_exception_of_what_it_ran():
    from streams.parent_death import StartingThread

    starter = StartingThread("test-starter")
    try:
        with pytest.raises(ValueError, match="no"):
            starter.run(lambda: int("no"))
        assert starter.run(lambda: 7) == 7
    finally:
        starter.close()
