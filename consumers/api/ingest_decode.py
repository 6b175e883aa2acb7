"""Turning a ``POST /v1/events`` body into an encoded batch, inline or in worker processes.

Parsing, validating and encoding cost ~8–10 µs of CPU an event here, more than appending it, and
under one GIL they would serialize every request of the server. Bodies of at least
``pool_min_bytes`` are therefore decoded by a small pool of worker processes (spawned
on first use, each with a copy of the registry) while this process appends and
answers; smaller bodies are decoded inline, where a round trip to a worker would cost
more than it saves. Both paths run ``application.decode.decode_body``, so their answers
are identical. Workers run niced (``application.decoder_priority``), behind the appends
and the event loop.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from application.decode import DecodedBody, decode_body
from application.decoder_priority import lower_decoder_priority
from events.registry import EventRegistry

POOL_MIN_BYTES = 64 * 1024  # about 200 events


class BodyDecoder:
    """Decodes bodies inline or in a process pool (``workers`` > 0), by size."""

    def __init__(self, registry: EventRegistry, *, workers: int, pool_min_bytes: int = POOL_MIN_BYTES):
        self.registry = registry
        self.workers = workers if registry.sendable_to_process() else 0
        self.pool_min_bytes = pool_min_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    async def decode(self, body: bytes, ndjson: bool) -> DecodedBody:
        if self.workers and len(body) >= self.pool_min_bytes:
            loop = asyncio.get_running_loop()
            pool = self._executor()
            try:
                return await loop.run_in_executor(pool, _decode_in_worker, body, ndjson)
            except BrokenProcessPool:  # a worker died (killed, out of memory): start afresh next time
                self._discard(pool)
        return await asyncio.to_thread(decode_body, body, ndjson, self.registry)

    def start(self) -> None:
        """Spawn the workers now (a server does, so its first large request does not wait ~1 s)."""
        if self.workers:
            pool = self._executor()
            for future in [pool.submit(_ready) for _ in range(self.workers)]:
                future.result(timeout=60)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the server has threads (a forked copy could hold their locks).
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(pickle.dumps(self.registry),),
                )
            return self._pool


_worker_registry: EventRegistry | None = None


def _start_worker(registry: bytes) -> None:
    global _worker_registry
    _worker_registry = pickle.loads(registry)
    lower_decoder_priority()  # appends and the event loop are serial: they get a core first
    gc.freeze()  # the imported modules never need collecting; keeps young collections short


def _ready() -> bool:
    return _worker_registry is not None


def _decode_in_worker(body: bytes, ndjson: bool) -> DecodedBody:
    assert _worker_registry is not None, "worker started without a registry"
    # The events of a body are acyclic and die with it: collections while they are being
    # built only traverse them.
    gc.disable()
    try:
        return decode_body(body, ndjson, _worker_registry)
    finally:
        gc.enable()
