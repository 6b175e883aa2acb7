"""``touchpoints ingest FILE``: bulk-load NDJSON history into the event store (the backfill path)."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import orjson

from application.bulk_ingest import (
    DEFAULT_BATCH_SIZE,
    BulkReport,
    RejectedLine,
    bulk_load,
)
from application.ingest import Ingestor
from application.privacy.keys import KeyStoreError
from application.privacy.mode import settle
from application.privacy.policy import Sealing, ingest_registry
from application.settings import Settings, SettingsError
from events.registry import REGISTRY
from events.store import EventStore, EventStoreError

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_STORE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
PROGRESS_MIN_BYTES = 1 << 20  # smaller inputs finish before a bar would help

EPILOG = """exit status:
  0  every line was stored (or was a duplicate of a stored event)
  1  some lines were rejected (see the rejects file); the valid ones were stored
  2  usage error (bad option, unreadable input, unwritable rejects file)
  3  the load failed part-way (store unavailable, decoder failure)
  130 interrupted (Ctrl-C)
  After 2 (unreadable input), 3 or 130 the batches before the stop are committed; running
  the same command again completes the load (appends are idempotent by event_id).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="bulk-load NDJSON events into the store",
        description="Validate each line of an NDJSON file (one wire-format event per line) and append "
        "the valid ones in large batches, one transaction per batch. Invalid lines are written with their "
        "line number and reasons to a rejects file. Events already stored (same event_id) are counted "
        "as duplicates and not written again, so a load can safely be repeated.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="NDJSON input, '-' for stdin")
    parser.add_argument("--store", metavar="URL", help="event store URL (default: TOUCHPOINTS_STORE or the data folder's)")
    parser.add_argument("--rejects", metavar="PATH",
                        help="where invalid lines go (default: FILE.rejects.ndjson; stdin: ./stdin.rejects.ndjson)")
    parser.add_argument("--batch-size", type=_batch_size, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help=f"events per transaction (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        url = args.store or settings.store_url
    except SettingsError as error:
        return _usage(str(error))
    from events.factory import open_store

    REGISTRY.load_plugins()
    with ExitStack() as stack:
        try:
            source, total = _open_input(args.file, stack)
        except OSError as error:
            return _usage(f"cannot read {args.file}: {error.strerror or error}")
        rejects_path = Path(args.rejects) if args.rejects else _default_rejects(args.file)
        rejects = _RejectsFile(rejects_path)
        stack.callback(rejects.close)
        try:
            store = open_store(url)
        except (EventStoreError, ValueError) as error:
            return _usage(f"cannot open the store {url}: {error}")
        stack.callback(store.close)
        try:
            settings = settle(settings, store)  # the log's sealing mode
        except KeyStoreError as error:
            return _usage(str(error))
        progress = _progress_bar(total, quiet=args.quiet or args.json)
        if progress is not None:
            stack.callback(progress.close)
        committed = [BulkReport()]
        on_progress = _progress_updater(progress, committed)
        started = time.perf_counter()
        try:
            report = ingest_file(source, store, size_hint=total, batch_size=args.batch_size,
                                 on_reject=rejects.write, on_progress=on_progress, sealing=settings.sealing,
                                 data=settings.data)
        except OSError as error:
            reason = (f"cannot write rejects to {rejects_path}" if rejects.failed else f"cannot read {args.file}")
            return _stopped(f"{reason}: {error.strerror or error}", committed[0], EXIT_USAGE)
        except (EventStoreError, KeyStoreError, RuntimeError) as error:
            return _stopped(f"the load failed: {error}", committed[0], EXIT_STORE)
        except KeyboardInterrupt:
            return _stopped("interrupted", committed[0], EXIT_INTERRUPTED)
        elapsed = time.perf_counter() - started
    _print_summary(report, elapsed, rejects_path if report.rejected else None, as_json=args.json)
    return EXIT_REJECTED if report.rejected else EXIT_OK


def ingest_file(
    source: IO[bytes], store: EventStore, *, size_hint: int | None = None, sealing: Sealing | None = None,
    data: Path | None = None, **options: Any,
) -> BulkReport:
    """What the command does once its input and store are open (benchmarks call this);
    ``sealing``: how personal data is sealed (``TOUCHPOINTS_SEAL_PERSONAL_DATA``); ``data``:
    the data folder whose key store records the mode (``application.privacy.policy.ingest_registry``)."""
    ingestor = Ingestor(store, ingest_registry(REGISTRY, sealing, data=data))
    return bulk_load(_chunks(source), ingestor, size_hint=size_hint, **options)


def _chunks(source: IO[bytes]) -> Iterator[bytes]:
    """Large blocks: far fewer calls than reading line by line, on files and pipes alike."""
    while True:
        block = source.read(1 << 20)
        if not block:
            return
        yield block


def _open_input(name: str, stack: ExitStack) -> tuple[IO[bytes], int | None]:
    if name == "-":
        return sys.stdin.buffer, None
    path = Path(name)
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory")
    source = stack.enter_context(path.open("rb"))
    return source, path.stat().st_size


def _default_rejects(name: str) -> Path:
    return Path("stdin.rejects.ndjson") if name == "-" else Path(f"{name}.rejects.ndjson")


class _RejectsFile:
    """Opened on the first rejected line, so a clean load leaves no empty file behind."""

    def __init__(self, path: Path):
        self.path = path
        self.failed = False
        self._file: IO[bytes] | None = None

    def write(self, rejected: RejectedLine) -> None:
        if self._file is None:
            try:
                self._file = self.path.open("wb")
            except OSError:
                self.failed = True
                raise
        self._file.write(orjson.dumps(rejected.as_dict()) + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _progress_bar(total: int | None, *, quiet: bool) -> Any:
    if quiet or not sys.stderr.isatty() or (total is not None and total < PROGRESS_MIN_BYTES):
        return None
    from tqdm import tqdm

    size = shutil.get_terminal_size((100, 24))  # a terminal may report 0x0: tqdm would then hide the bar
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="ingest", file=sys.stderr,
                ncols=size.columns or 100, nrows=size.lines or 24)


def _progress_updater(progress: Any, committed: list[BulkReport]) -> Any:
    """Keeps ``committed[0]`` at the last committed report and moves the bar, if any."""

    def update(report: BulkReport) -> None:
        if progress is not None:
            progress.update(report.bytes_read - committed[0].bytes_read)
            progress.set_postfix(accepted=report.accepted, duplicates=report.duplicates, rejected=report.rejected,
                                 refresh=False)
        committed[0] = dataclasses.replace(report)

    return update


def _stopped(reason: str, committed: BulkReport, code: int) -> int:
    print(f"touchpoints ingest: {reason}", file=sys.stderr)
    lines = f" (input lines 1-{committed.lines})" if committed.lines else ""
    print(f"committed before stopping: {committed.accepted} accepted, {committed.duplicates} duplicates, "
          f"{committed.rejected} rejected{lines}; running the same command again "
          "completes the load (events already stored count as duplicates)", file=sys.stderr)
    return code


def _print_summary(report: BulkReport, elapsed: float, rejects: Path | None, *, as_json: bool) -> None:
    rate = (report.accepted + report.duplicates) / elapsed if elapsed > 0 else 0.0
    if as_json:
        document = {**report.as_dict(), "seconds": round(elapsed, 3), "events_per_second": round(rate),
                    "rejects_file": str(rejects) if rejects else None}
        sys.stdout.buffer.write(orjson.dumps(document) + b"\n")
        return
    print(f"accepted: {report.accepted}  duplicates: {report.duplicates}  rejected: {report.rejected}  "
          f"({report.lines} line{'' if report.lines == 1 else 's'} in {elapsed:.1f} s, {rate:,.0f} events/s)")
    if rejects is not None:
        print(f"rejected lines and reasons: {rejects}")


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"expected 1 to 1000000, got {value}")
    return value


def _usage(message: str) -> int:
    print(f"touchpoints ingest: {message}", file=sys.stderr)
    return EXIT_USAGE
