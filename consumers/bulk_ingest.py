"""Bulk loading of NDJSON history: the backfill path of ``touchpoints ingest``.

Lines are parsed, validated and encoded into large batches, each appended in one
``append_batch`` transaction through ``consumers.ingest.Ingestor``. Invalid lines are
handed to a callback with their line number and reasons; valid lines around them are
stored. Appends are idempotent by ``event_id``, so repeating a load (after a failure, or
with overlapping files) stores nothing twice.

Decoding (pydantic validation and encoding) and appending (SQLite, hashing) each need
about a core. With ``decoder="process"`` a child process decodes the next batches while
this process appends: the child receives the raw input on stdin and returns encoded
events on stdout, so neither side waits for the other's GIL. ``decoder="thread"`` decodes in a thread of this
process (it overlaps only the store's I/O); it serves small inputs, where starting a
process costs more than it saves, and registries that cannot be sent to a child.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from queue import Full, Queue
from typing import IO, Any, Literal
from uuid import UUID

import orjson

from consumers.ingest import Ingestor, to_new_event
from events.registry import EventRegistry, FieldError, InvalidEvent
from events.store import NewEvent
from projections.collector import collector_paused

DEFAULT_BATCH_SIZE = 10_000
PROCESS_MIN_BYTES = 8 << 20  # below this a child process costs more than it saves
Decoder = Literal["auto", "process", "thread"]


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """An input line that was not stored: its 1-based number, bytes and reasons."""

    line: int
    raw: bytes
    errors: list[FieldError]

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "errors": [error.as_dict() for error in self.errors],
            "raw": self.raw.decode("utf-8", errors="replace"),
        }


@dataclass
class BulkReport:
    """What a bulk load did so far. ``lines`` counts every line read, blank ones included."""

    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    blank: int = 0
    bytes_read: int = 0
    batches: int = 0
    decoder: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "blank": self.blank,
            "bytes": self.bytes_read,
            "batches": self.batches,
            "decoder": self.decoder,
        }


@dataclass
class _Batch:
    items: list[tuple[str, NewEvent]] = field(default_factory=list)
    rejects: list[RejectedLine] = field(default_factory=list)
    lines: int = 0
    blank: int = 0
    size: int = 0


def bulk_load(
    chunks: Iterable[bytes],
    ingestor: Ingestor,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_reject: Callable[[RejectedLine], None] | None = None,
    on_progress: Callable[[BulkReport], None] | None = None,
    decoder: Decoder = "auto",
    size_hint: int | None = None,
) -> BulkReport:
    """Load NDJSON given as byte ``chunks`` (any split; lines may span chunks), appending
    ``batch_size`` valid events per transaction. ``on_reject`` receives every invalid line,
    ``on_progress`` the report after each committed batch. ``decoder="auto"`` decodes in a
    child process unless ``size_hint`` (bytes) says the input is small.

    A store error propagates after the batches before it were committed; loading the
    same input again completes the load."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if decoder == "auto":
        small = size_hint is not None and size_hint < PROCESS_MIN_BYTES
        decoder = "thread" if small or not _sendable(ingestor.registry) else "process"
    report = BulkReport(decoder=decoder)
    input_errors: list[BaseException] = []
    chunks = _until_error(chunks, input_errors)
    if decoder == "process":
        batches: Iterator[_Batch] = _decode_in_process(chunks, ingestor.registry, batch_size)
    else:
        batches = _read_ahead(decode_batches(split_lines(chunks), ingestor.registry, batch_size))
    with collector_paused():
        try:
            for batch in batches:
                _commit(batch, ingestor, report, on_reject)
                if on_progress is not None:
                    on_progress(report)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
    if input_errors:
        raise input_errors[0]
    return report


def _until_error(chunks: Iterable[bytes], errors: list[BaseException]) -> Iterator[bytes]:
    """The chunks until reading fails; the error is kept for the caller to raise once the
    lines read before it are stored."""
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except Exception as error:
            errors.append(error)
            return
        yield chunk


def _commit(batch: _Batch, ingestor: Ingestor, report: BulkReport, on_reject: Callable | None) -> None:
    if batch.items:
        outcomes = ingestor.append_new(batch.items)
        duplicates = sum(1 for outcome in outcomes if outcome.duplicate)
        report.accepted += len(outcomes) - duplicates
        report.duplicates += duplicates
        report.batches += 1
    for rejected in batch.rejects:
        report.rejected += 1
        if on_reject is not None:
            on_reject(rejected)
    report.lines += batch.lines
    report.blank += batch.blank
    report.bytes_read += batch.size


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines (without ``\\n``) of a byte stream given in arbitrary chunks."""
    rest = b""
    for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def decode_batches(lines: Iterable[bytes], registry: EventRegistry, batch_size: int) -> Iterator[_Batch]:
    """Parse, validate and encode lines into batches of up to ``batch_size`` valid events."""
    loads = orjson.loads
    validate = registry.validate
    batch = _Batch()
    for number, line in enumerate(lines, start=1):
        batch.lines += 1
        batch.size += len(line) + 1
        if not line.strip():
            batch.blank += 1
            continue
        try:
            event = validate(loads(line))
        except orjson.JSONDecodeError as error:
            batch.rejects.append(RejectedLine(number, line.rstrip(b"\r"), [FieldError("", f"malformed JSON: {error}")]))
            continue
        except InvalidEvent as error:
            batch.rejects.append(RejectedLine(number, line.rstrip(b"\r"), error.errors))
            continue
        batch.items.append((event.stream, to_new_event(event)))
        if len(batch.items) >= batch_size:
            yield batch
            batch = _Batch()
    if batch.lines:
        yield batch




# --- decoding in a thread ---------------------------------------------------------------

_DONE = object()


def _read_ahead(batches: Iterator[_Batch], depth: int = 2) -> Iterator[_Batch]:
    """Run ``batches`` in a thread, up to ``depth`` batches ahead; its errors re-raise here,
    and closing this generator stops the thread."""
    queue: Queue[Any] = Queue(maxsize=depth)
    stopping = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                if not _put(queue, batch, stopping):
                    return
            _put(queue, _DONE, stopping)
        except BaseException as error:  # handed to the consumer, which re-raises it
            _put(queue, error, stopping)

    thread = threading.Thread(target=produce, name="ingest-decoder", daemon=True)
    thread.start()
    try:
        while True:
            item = queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopping.set()
        thread.join(timeout=1.0)  # it may be blocked reading a terminal; it is a daemon


def _put(queue: Queue[Any], item: Any, stopping: threading.Event) -> bool:
    while not stopping.is_set():
        try:
            queue.put(item, timeout=0.1)
            return True
        except Full:
            continue
    return False


# --- decoding in a child process -----------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_FRAME = struct.Struct(">Q")


def _sendable(registry: EventRegistry) -> bool:
    """Whether a child process can rebuild ``registry``: every model and upcaster must be
    importable by name (the child gets this process's ``sys.path``, not its ``__main__``)."""
    try:
        payload = pickle.dumps(registry)
    except Exception:  # e.g. a model defined inside a function
        return False
    return b"__main__" not in payload


def _decode_in_process(chunks: Iterable[bytes], registry: EventRegistry, batch_size: int) -> Iterator[_Batch]:
    """Decode in a child Python process: a feeder thread writes the registry and then the raw
    input to its stdin; a reader thread drains packed batches from its stdout (so the child
    runs ahead while this process appends). A plain subprocess rather than multiprocessing,
    so callers need no ``__main__`` guard."""
    search_path = [str(Path(__file__).resolve().parent.parent)] + [str(Path(p).resolve()) for p in sys.path if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(search_path)}
    child = subprocess.Popen(
        [sys.executable, "-m", "consumers.bulk_ingest", str(batch_size)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )
    assert child.stdin is not None and child.stdout is not None
    feeder = threading.Thread(
        target=_feed, args=(pickle.dumps(registry), chunks, child.stdin), name="ingest-feeder", daemon=True
    )
    feeder.start()
    batches = _read_ahead(_child_batches(child))
    try:
        yield from batches
    finally:
        batches.close()
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
        feeder.join(timeout=1.0)  # it may be blocked reading a terminal; it is a daemon


def _child_batches(child: subprocess.Popen) -> Iterator[_Batch]:
    while True:
        message = _read_frame(child.stdout)  # type: ignore[arg-type]
        if message is None:
            raise RuntimeError(f"the decoder process ended unexpectedly (exit code {child.poll()})")
        if not message:
            return
        kind, payload = pickle.loads(message)
        if kind == "error":
            raise RuntimeError(f"the decoder process failed: {payload}")
        yield _unpack(payload)


def _feed(registry: bytes, chunks: Iterable[bytes], sink: IO[bytes]) -> None:
    """Send the registry, then the input; a closed pipe means the child is gone (the reader
    side reports it)."""
    try:
        sink.write(_FRAME.pack(len(registry)) + registry)
        for chunk in chunks:
            sink.write(chunk)
    except OSError:
        return
    finally:
        try:
            sink.close()
        except OSError:
            pass


def _read_frame(source: IO[bytes]) -> bytes | None:
    """One length-prefixed message; None if the stream ended first."""
    header = source.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return None
    (length,) = _FRAME.unpack(header)
    body = source.read(length)
    return body if len(body) == length else None


def _write_frame(sink: IO[bytes], message: bytes) -> None:
    sink.write(_FRAME.pack(len(message)) + message)
    sink.flush()


def decoder_main(batch_size: int) -> int:
    """The child: a registry frame then raw NDJSON on stdin; packed batches on stdout,
    ended by an empty frame."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    try:
        registry = pickle.loads(_read_frame(source) or b"")

        def chunks() -> Iterator[bytes]:
            while chunk := source.read(1 << 20):
                yield chunk

        gc.disable()
        for batch in decode_batches(split_lines(chunks()), registry, batch_size):
            _write_frame(sink, pickle.dumps(("batch", _pack(batch)), protocol=pickle.HIGHEST_PROTOCOL))
        _write_frame(sink, b"")
        return 0
    except BrokenPipeError:
        return 1  # the parent stopped reading
    except Exception as error:  # reported to the parent, which raises it
        _write_frame(sink, pickle.dumps(("error", f"{type(error).__name__}: {error}")))
        return 1


def _pack(batch: _Batch) -> tuple:
    items = [
        (stream, new.event_id.bytes, new.type, new.schema_version, (new.occurred_at - _EPOCH) // _MICROSECOND, new.data)
        for stream, new in batch.items
    ]
    rejects = [(r.line, r.raw, [(e.field, e.reason) for e in r.errors]) for r in batch.rejects]
    return items, rejects, batch.lines, batch.blank, batch.size


def _unpack(payload: tuple) -> _Batch:
    items, rejects, lines, blank, size = payload
    epoch, micro = _EPOCH, _MICROSECOND
    return _Batch(
        items=[
            (stream, NewEvent(UUID(bytes=id_bytes), type_, version, epoch + micros * micro, data))
            for stream, id_bytes, type_, version, micros, data in items
        ],
        rejects=[RejectedLine(line, raw, [FieldError(f, r) for f, r in errors]) for line, raw, errors in rejects],
        lines=lines,
        blank=blank,
        size=size,
    )


if __name__ == "__main__":
    sys.exit(decoder_main(int(sys.argv[1])))
