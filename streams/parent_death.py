"""Child processes that die with the process that started them (Linux's parent-death signal).

A supervisor killed with SIGKILL runs no cleanup: without help its children (the bundled
broker, the relay, the worker) live on, holding ports and memory. ``die_with_parent()``
gives ``subprocess.Popen`` a ``preexec_fn`` that asks the kernel, between fork and exec, to
send the child SIGKILL when its parent goes (``prctl(PR_SET_PDEATHSIG)``), and checks that
the parent is still there: one that died before the request was made sends no signal.

Linux counts the *thread* that started the child as its parent: start long-lived children
from a thread that lives as long as they should (the main thread, or a supervisor's).
Elsewhere (no ``prctl``) the ``preexec_fn`` does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    # Resolved once, in the parent: the child between fork and exec should only call it.
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def die_with_parent(parent: int | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets SIGKILL when this process
    (the thread calling Popen) dies, including when it died before the child got this far
    (the child then finds another parent than ``parent``, by default this process)."""
    parent = os.getpid() if parent is None else parent

    def request_parent_death_signal() -> None:  # runs in the child, between fork and exec
        if _prctl is None:
            return
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # orphaned already: no signal will come, so go now
            os.kill(os.getpid(), signal.SIGKILL)

    return request_parent_death_signal


class StartingThread:
    """A thread that runs what it is given (starting children, typically) and lives until
    ``close()``: children it started keep their parent-death signal armed until then,
    whichever short-lived thread asked for them."""

    def __init__(self, name: str):
        import queue
        import threading

        self._requests: queue.Queue[tuple[Callable[[], object], Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, work: Callable[[], T]) -> T:
        """Run ``work`` in this thread; return its result or raise its exception."""
        from concurrent.futures import Future

        future: Future[T] = Future()
        self._requests.put((work, future))
        return future.result()

    def close(self, timeout: float = 5.0) -> None:
        self._requests.put(None)
        self._thread.join(timeout)

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            work, future = request
            try:
                future.set_result(work())
            except BaseException as error:  # handed to the caller, who re-raises it
                future.set_exception(error)
