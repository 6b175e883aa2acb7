"""Turning a ``POST /v1/events`` body into an encoded batch, inline or in worker processes.

Parsing, validating and encoding cost ~15–20 µs an event here, more than appending it, and
under one GIL they would serialize every request of the server. Bodies of at least
``pool_min_bytes`` are therefore decoded by a small pool of worker processes (spawned
on first use, each with a copy of the registry) while this process appends and
answers; smaller bodies are decoded inline, where a round trip to a worker would cost
more than it saves. Both paths run ``decode_body``, so their answers are identical.
Workers run niced (``application.decoder_priority``), behind the appends and the event loop.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from consumers.api.body import BodyError, parse_items
from application.decoder_priority import lower_decoder_priority
from application.ingest import ItemError
from events.encoded import EncodedBatch
from events.models import Event
from events.registry import EventRegistry, InvalidEvent

POOL_MIN_BYTES = 64 * 1024  # about 200 events


@dataclass(slots=True)
class DecodedBody:
    """What a body held: an encoded batch, or why it was refused (a body error, or the
    invalid items: then nothing of the request may be stored)."""

    count: int = 0  # items in the body
    batch: EncodedBatch = field(default_factory=EncodedBatch)
    invalid: list[ItemError] = field(default_factory=list)
    body_error: tuple[int, dict[str, Any]] | None = None  # (status, document)


def decode_body(body: bytes, ndjson: bool, registry: EventRegistry) -> DecodedBody:
    """Parse, validate every item, and encode the batch if all are valid."""
    events = _all_valid_fast(body, ndjson, registry)
    if events is not None:
        decoded = DecodedBody(count=len(events))
        decoded.batch.extend(events)
        return decoded
    try:
        items = parse_items(body, ndjson=ndjson)
    except BodyError as error:
        return DecodedBody(body_error=(error.status, error.document))
    decoded = DecodedBody(count=len(items))
    events = []
    validate = registry.validate
    for index, item in enumerate(items):
        try:
            events.append(validate(item))
        except InvalidEvent as error:
            decoded.invalid.append(ItemError(index, error.errors))
    if not decoded.invalid:
        decoded.batch.extend(events)
    return decoded


def _all_valid_fast(body: bytes, ndjson: bool, registry: EventRegistry) -> list[Event] | None:
    """The events of a body whose every item is a valid current-version event, decoded
    without building dicts in Python; None sends the body down the item-by-item path,
    which answers malformed, empty or invalid bodies exactly."""
    if not ndjson:
        return registry.fast_decode_array(body) if body.lstrip()[:1] == b"[" else None
    return registry.fast_decode_lines(line for line in body.split(b"\n") if line.strip())


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
