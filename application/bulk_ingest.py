"""Bulk loading of NDJSON history: the backfill path of ``touchpoints ingest``.

Lines are parsed and validated (``application.decode``) and encoded
(``events.encoded.EncodedBatch``) into large batches, each appended in one transaction
through ``Ingestor.append_encoded``, in input order (``application.ingest``). Invalid
lines are handed to a callback with their line number and reasons; valid lines around
them are stored. Appends are idempotent by ``event_id``, so repeating a load (after a
failure, or with overlapping files) stores nothing twice.

Decoding (pydantic validation and encoding, ~8–10 µs of CPU an event here) costs more than appending
(SQLite and the hash chain, ~9 µs), so with ``decoder="process"`` child processes decode while
this process appends: a feeder thread cuts the input into blocks of ``batch_size`` lines
(finding newlines in C, without making an object of each line) and deals them out to the
children in turn; the batches are read back in the same turn, so the log keeps the input
order. The children run niced (``application.decoder_priority``): the appending process,
the serial part, gets a core whenever it can use one. They are forked, so they start at
once with the registry in memory (a fresh interpreter, where the platform cannot fork,
first spends ~0.3 s importing and then reads the pickled registry). A child decodes its
block ``DECODE_SLICE`` lines at a time so that the events being encoded are still in the
core's cache (sealing personal data, it seals and encodes the whole block at once instead:
``decode_block``). ``decoder="thread"`` decodes in a thread of this process (it overlaps only
the store's I/O); it serves small inputs, where starting a process costs more than it
saves, and registries that cannot be sent to a child.
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
from itertools import islice
from pathlib import Path
from queue import Full, Queue
from typing import IO, Any, Literal

from application.collector import collector_paused
from application.decode import decode_documents
from application.decoder_priority import lower_decoder_priority
from application.ingest import Ingestor
from events.encoded import ENCODE_SLICE, EncodedBatch
from events.models import Event
from events.registry import EventRegistry, FieldError

DEFAULT_BATCH_SIZE = 10_000
PROCESS_MIN_BYTES = 8 << 20  # below this a child process costs more than it saves
# Two children keep both cores busy: the appending side needs less than half of one.
DECODER_PROCESSES = max(1, min(2, os.cpu_count() or 1))
# Lines decoded at a time: the events of a slice are validated, then encoded (one encoder
# pass), while still in the core's cache (a 10,000-line slice cost a third more CPU an event).
DECODE_SLICE = ENCODE_SLICE
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
    encoded: EncodedBatch = field(default_factory=EncodedBatch)
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
    processes: int = DECODER_PROCESSES,
) -> BulkReport:
    """Load NDJSON given as byte ``chunks`` (any split; lines may span chunks), appending
    ``batch_size`` valid events per transaction. ``on_reject`` receives every invalid line,
    ``on_progress`` the report after each committed batch. ``decoder="auto"`` decodes in a
    child process unless ``size_hint`` (bytes) says the input is small; ``processes`` is
    how many children decode in turn.

    A store error propagates after the batches before it were committed; loading the
    same input again completes the load."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if decoder == "auto":
        small = size_hint is not None and size_hint < PROCESS_MIN_BYTES
        decoder = "thread" if small or not ingestor.registry.sendable_to_process() else "process"
    report = BulkReport(decoder=decoder)
    input_errors: list[BaseException] = []
    chunks = _until_error(chunks, input_errors)
    if decoder == "process":
        batches: Iterator[_Batch] = _decode_in_process(chunks, ingestor.registry, batch_size, processes)
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
    if len(batch.encoded):
        outcomes = ingestor.append_encoded(batch.encoded)
        duplicates = outcomes.duplicate_count
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


def line_blocks(chunks: Iterable[bytes], lines_per_block: int) -> Iterator[tuple[bytes, int]]:
    """``(block, count)``: the byte stream cut into blocks of ``lines_per_block`` lines
    (the last may have fewer), each without its final ``\\n``, so that
    ``block.split(b"\\n")`` gives the same ``count`` lines as ``split_lines`` would.
    Newlines are found and counted in C; no line becomes an object here."""
    parts: list[bytes] = []  # the pending block: chunks whose newlines are fewer than needed
    pending = 0  # newlines in parts
    for chunk in chunks:
        newlines = chunk.count(b"\n")
        while pending + newlines >= lines_per_block:
            cut = -1
            for _ in range(lines_per_block - pending):  # the cut is the (lines_per_block - pending)th newline
                cut = chunk.index(b"\n", cut + 1)
            parts.append(chunk[:cut])
            yield b"".join(parts), lines_per_block
            parts, pending = [], 0
            chunk = chunk[cut + 1 :]
            newlines = chunk.count(b"\n")
        if chunk:
            parts.append(chunk)
            pending += newlines
    rest = b"".join(parts)
    if rest:  # the last lines; a final newline ends the last line rather than starting one
        rest = rest[:-1] if rest.endswith(b"\n") else rest
        yield rest, rest.count(b"\n") + 1


def decode_batches(
    lines: Iterable[bytes], registry: EventRegistry, batch_size: int, *, first_line: int = 1
) -> Iterator[_Batch]:
    """Parse, validate and encode lines into batches, one per ``batch_size`` lines (so at
    most ``batch_size`` events each); ``first_line`` is the number of the first line
    (rejects name their line)."""
    lines = iter(lines)
    while block := list(islice(lines, batch_size)):
        yield decode_block(block, registry, first_line)
        first_line += len(block)


def decode_block(lines: list[bytes], registry: EventRegistry, first_line: int) -> _Batch:
    """One batch from a block of lines, validated ``DECODE_SLICE`` lines at a time. Each slice
    is made ready and encoded at once, while its events are in the core's cache; unless the
    registry's ingest step prefers large batches (sealing: the block's new keys then cost one
    key store transaction, not one per slice, ~1 µs an event less than slice by slice on
    the demo data, where encoding a whole block costs ~0.8 µs an event more)."""
    batch = _Batch(lines=len(lines), size=sum(map(len, lines)) + len(lines))
    slices = range(0, len(lines), DECODE_SLICE)
    if not registry.ingest_step_prefers_large_batches:
        for start in slices:
            batch.encoded.extend(registry.ingest_ready(
                _decode_slice(lines[start : start + DECODE_SLICE], registry, first_line + start, batch)))
        return batch
    events = [event for start in slices
              for event in _decode_slice(lines[start : start + DECODE_SLICE], registry, first_line + start, batch)]
    batch.encoded.extend(registry.ingest_ready(events))
    return batch


def _decode_slice(lines: list[bytes], registry: EventRegistry, first_line: int, batch: _Batch) -> list[Event]:
    """Validate a few lines (``application.decode``): blank lines are counted on ``batch``,
    invalid ones rejected there with their number and reasons; the valid ones are returned."""
    filled = [line for line in lines if line.strip()]
    batch.blank += len(lines) - len(filled)
    decoded = decode_documents(filled, registry)
    if decoded.invalid:
        numbers = [number for number, line in enumerate(lines, start=first_line) if line.strip()]
        batch.rejects += [
            RejectedLine(numbers[item.index], filled[item.index].rstrip(b"\r"), item.errors) for item in decoded.invalid
        ]
    return decoded.events


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


# --- decoding in child processes ----------------------------------------------------------

_FRAME = struct.Struct(">Q")
_BLOCK_HEAD = struct.Struct(">Q")  # the number of a block's first line


def _decode_in_process(
    chunks: Iterable[bytes], registry: EventRegistry, batch_size: int, processes: int = DECODER_PROCESSES
) -> Iterator[_Batch]:
    """Decode in ``processes`` child processes. A feeder thread deals blocks of
    ``batch_size`` lines to the children in turn; one reader thread per child drains its
    batches; they are yielded in block order. Children are forked where the platform can
    (``_ForkedDecoder``), else fresh interpreters; plain processes rather than
    multiprocessing either way, so callers need no ``__main__`` guard."""
    children = _start_decoders(registry, processes)
    feeder = threading.Thread(target=_feed, args=(chunks, batch_size, children), name="ingest-feeder", daemon=True)
    feeder.start()
    readers = [_read_ahead(_child_batches(child)) for child in children]
    try:
        yield from _in_turn(readers)
    finally:
        for reader in readers:
            reader.close()
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            child.stdout.close()  # type: ignore[union-attr]
        feeder.join(timeout=1.0)  # it may be blocked reading a terminal; it is a daemon


def _start_decoders(registry: EventRegistry, processes: int) -> list[Any]:
    if hasattr(os, "fork"):
        children: list[Any] = []
        for _ in range(processes):
            inherited = [fd for child in children for fd in (child.stdin.fileno(), child.stdout.fileno())]
            children.append(_ForkedDecoder(registry, inherited))
        return children
    search_path = [str(Path(__file__).resolve().parent.parent)] + [str(Path(p).resolve()) for p in sys.path if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(search_path)}
    registry_frame = pickle.dumps(registry)
    spawned = []
    for _ in range(processes):
        child = subprocess.Popen(
            [sys.executable, "-m", "application.bulk_ingest"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        _write_frame(child.stdin, registry_frame)  # type: ignore[arg-type]
        spawned.append(child)
    return spawned


class _ForkedDecoder:
    """A decoder child forked from this process, with the ``subprocess.Popen`` methods the
    loader uses. It starts at once, modules and registry already in its memory, where a
    fresh interpreter spends ~0.3 s importing them (a tenth of a 200k-event load). The
    child touches nothing of the parent but the registry and its two pipes, and leaves
    with ``os._exit``: no finalizer of the parent's objects (the store's connection) runs."""

    def __init__(self, registry: EventRegistry, close_in_child: list[int]):
        from_parent, to_child = os.pipe()  # (read end, write end)
        from_child, to_parent = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                for fd in (to_child, from_child, *close_in_child):  # so each child sees its own EOF
                    os.close(fd)
                code = decoder_main(os.fdopen(from_parent, "rb"), os.fdopen(to_parent, "wb"), registry)
            finally:
                os._exit(code)
        os.close(from_parent)
        os.close(to_parent)
        self.pid = pid
        self.stdin = os.fdopen(to_child, "wb")
        self.stdout = os.fdopen(from_child, "rb")
        self.returncode: int | None = None
        # its reader thread polls it when its pipe ends while the loader waits for it (an
        # interrupted load): reaped twice, the second waitpid raised ECHILD, which replaced
        # the KeyboardInterrupt (as subprocess.Popen, one reaper at a time)
        self._reaping = threading.Lock()

    def poll(self) -> int | None:
        with self._reaping:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self) -> int:
        with self._reaping:
            if self.returncode is None:
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            return self.returncode


def _in_turn(readers: list[Iterator[_Batch]]) -> Iterator[_Batch]:
    """Block k came from reader k mod n: take them back in that order until one ends."""
    while True:
        for reader in readers:
            batch = next(reader, None)
            if batch is None:
                return
            yield batch


def _child_batches(child: Any) -> Iterator[_Batch]:
    while True:
        message = _read_frame(child.stdout)  # type: ignore[arg-type]
        if message is None:
            raise RuntimeError(f"the decoder process ended unexpectedly (exit code {child.poll()})")
        if not message:
            return
        kind, payload = pickle.loads(message)
        if kind == "error":
            raise RuntimeError(f"the decoder process failed: {payload}")
        yield payload


def _feed(chunks: Iterable[bytes], batch_size: int, children: list[Any]) -> None:
    """Send the children blocks of ``batch_size`` lines in turn, then an empty frame each.
    A closed pipe means a child is gone (its reader reports it)."""
    sinks = [child.stdin for child in children]
    try:
        turn, first_line = 0, 1
        for block, count in line_blocks(chunks, batch_size):
            _write_frame(sinks[turn], _BLOCK_HEAD.pack(first_line) + block)  # type: ignore[arg-type]
            turn, first_line = (turn + 1) % len(sinks), first_line + count
        for sink in sinks:
            _write_frame(sink, b"")  # type: ignore[arg-type]
    except OSError:
        return
    finally:
        for sink in sinks:
            try:
                sink.close()  # type: ignore[union-attr]
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


def decoder_main(source: IO[bytes], sink: IO[bytes], registry: EventRegistry | None = None) -> int:
    """The child: blocks (first line number + lines) from ``source``, each answered by one
    decoded batch on ``sink``; an empty frame ends both. A spawned child reads the
    registry from the first frame; a forked one has it already."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    lower_decoder_priority()  # the appending parent is the serial part: it gets a core first
    try:
        if registry is None:
            registry = pickle.loads(_read_frame(source) or b"")
        gc.disable()  # batches are short-lived and acyclic; collections only cost time here
        while block := _read_frame(source):
            (first_line,) = _BLOCK_HEAD.unpack_from(block)
            lines = block[_BLOCK_HEAD.size :].split(b"\n")
            batch = decode_block(lines, registry, first_line)
            _write_frame(sink, pickle.dumps(("batch", batch), protocol=pickle.HIGHEST_PROTOCOL))
        _write_frame(sink, b"")
        return 0
    except BrokenPipeError:
        return 1  # the parent stopped reading
    except Exception as error:  # reported to the parent, which raises it
        _write_frame(sink, pickle.dumps(("error", f"{type(error).__name__}: {error}")))
        return 1


if __name__ == "__main__":
    # Run the importable module's copy, so the batches it pickles name application.bulk_ingest, not __main__.
    from application.bulk_ingest import decoder_main as _decoder_main

    sys.exit(_decoder_main(sys.stdin.buffer, sys.stdout.buffer))
