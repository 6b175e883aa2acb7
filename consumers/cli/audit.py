"""``touchpoints replay`` and ``touchpoints verify``: the auditor's commands.

``replay`` rebuilds every view from the event store (``application.replay``), optionally
at a point in time, and writes the documents, their digests and a report
(``application.replay_report``). ``verify`` recomputes the hash chain
(``application.verify``) or, with ``--views``, compares the live views with a fresh
replay (``application.verify_views``).

Exit codes: 0 success (a clean log, identical views); 1 a problem found (a tampered
log, differing views, events a replay could not decode); 2 bad arguments, unusable
settings or an unreachable store or API.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from consumers.cli.common import UsageError, open_store
from application.settings import Settings, SettingsError

DATES = "T: an RFC 3339 time with an offset, or a date meaning the end of that day in UTC; inclusive"




def register(subparsers: argparse._SubParsersAction) -> None:
    replay = subparsers.add_parser(
        "replay", help="Rebuild the views from the event log, optionally at a point in time",
        description="Rebuild every view from the event store with the projections the live processors run, "
        "and report the log's range, counts by type, the chain's head hash and a digest of each view. " + DATES
        + ". Exit 0 ok, 1 some events could not be decoded, 2 bad arguments or store.",
    )
    replay.add_argument("--projection", metavar="NAME", action="extend", nargs="+",
                        help="only these views (e.g. funnel attribution_markov) or families (attribution, "
                        "first_contact); default every view")
    replay.add_argument("--as-of", metavar="T", help="keep the events that occurred up to T (late arrivals included)")
    replay.add_argument("--known-at", metavar="T", help="keep the events the log had recorded up to T")
    replay.add_argument("--out", metavar="DIR", type=Path,
                        help="write views/<name>.json, report.json and report.txt into DIR")
    replay.add_argument("--store", metavar="URL", help="event store URL (default TOUCHPOINTS_STORE)")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(handler=lambda args: _run(args, "replay", _replay))

    verify = subparsers.add_parser(
        "verify", help="Check the log's hash chain (or, with --views, the live views against a replay)",
        description="Recompute the hash chain from the stored events and report the first position where an "
        "event was altered, removed or reordered. A clean log prints the head hash to note down; pass it back "
        "with --expect-head to also detect events removed from the end. Exit 0 clean, 1 problems, 2 bad "
        "arguments or store.",
    )
    verify.add_argument("--store", metavar="URL", help="event store URL (default TOUCHPOINTS_STORE)")
    verify.add_argument("--expect-head", metavar="HASH", help="a head hash noted earlier: it must still be in the log")
    verify.add_argument("--views", action="store_true",
                        help="compare the live views with a fresh replay, digest by digest, instead")
    verify.add_argument("--api", metavar="URL",
                        help="with --views: the server whose views to compare, read with the key in "
                        "TOUCHPOINTS_API_KEY (default: the views the CLI serves from its snapshot of this store)")
    verify.add_argument("--format", choices=("text", "json"), default="text", help="output (default text)")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    verify.set_defaults(handler=lambda args: _run(args, "verify", _verify))


def _run(args: argparse.Namespace, name: str, command: Callable[[argparse.Namespace, Any, Settings], int]) -> int:
    from events.store import EventStoreError
    from projections.parameters import ViewParameterError

    prog = f"touchpoints {name}"
    try:
        settings = Settings.from_env()
        with open_store(args.store or settings.store_url) as store:
            return command(args, store, settings)
    except (SettingsError, UsageError, ViewParameterError, EventStoreError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2


# --- replay ----------------------------------------------------------------------------------


def _replay(args: argparse.Namespace, store: Any, settings: Settings) -> int:
    from application import replay_report
    from application.replay import point_in_time, replay

    as_of = point_in_time("as_of", args.as_of)
    known_at = point_in_time("known_at", args.known_at)
    try:
        selected = replay_report.select_views(args.projection)
    except replay_report.UnknownProjection as error:
        raise UsageError(str(error)) from None
    started = time.perf_counter()
    with _progress_bar(store, "replaying", quiet=args.quiet) as progress:
        result = replay(store, as_of=as_of, known_at=known_at, progress=progress, freeze=True)
    folded = time.perf_counter() - started
    documents = replay_report.compute_views(result.population, result.now, selected)
    report = replay_report.build_report(result, documents, selected)
    if args.out is not None:
        replay_report.write_output(args.out, documents, report)
    sys.stdout.write(replay_report.render_text(report))
    rate = result.events_read / folded if folded > 0 else 0.0
    views_seconds = time.perf_counter() - started - folded
    print(f"\nreplayed in {folded:.1f} s ({rate:,.0f} events/s), views in {views_seconds:.1f} s"
          + (f"; written to {args.out}" if args.out is not None else ""))
    if result.undecodable:
        print(f"touchpoints replay: {result.undecodable} events could not be decoded and were left out "
              "(listed in the report)", file=sys.stderr)
        return 1
    return 0


# --- verify ----------------------------------------------------------------------------------


def _verify(args: argparse.Namespace, store: Any, settings: Settings) -> int:
    if args.views:
        return _verify_views(args, store, settings)
    if args.api:
        raise UsageError("--api goes with --views")
    from application.verify import VerifyUnsupported, parse_head, verify_log

    try:
        parse_head(args.expect_head) if args.expect_head else None
    except ValueError as error:
        raise UsageError(f"--expect-head: {error}") from None
    try:
        with _progress_bar(store, "verifying", quiet=args.quiet) as progress:
            report = verify_log(store, expect_head=args.expect_head, progress=progress)
    except VerifyUnsupported as error:
        raise UsageError(str(error)) from None
    if args.format == "json":
        sys.stdout.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render_verify(report))
    return 0 if report.ok else 1


def render_verify(report: Any) -> str:
    lines = []
    if report.events:
        lines.append(f"verified  {report.events:,} events at positions {report.first_position:,} .. "
                     f"{report.last_position:,}")
    else:
        lines.append("verified  0 events (an empty log)")
    where = f"  (position {report.last_position:,})" if report.events else ""
    trust = "" if report.ok else ", as stored: do not note it down"
    lines.append(f"head hash {report.head_hash.hex()}{where}{trust}")
    if report.expected_head_position is not None:
        since = report.appended_since_expected
        lines.append(f"noted head found at position {report.expected_head_position:,}"
                     + (f"; {since:,} events appended since" if since else ": it is the head"))
    if report.ok:
        lines.append("OK: every stored hash follows from the one before and the event's stored bytes; "
                     "positions increase; stream versions are contiguous")
    else:
        first = report.findings[0]
        lines.append(f"FAILED: {report.problems:,} problem(s); the first at position {first.position:,}")
        for finding in report.findings:
            where = f" [{finding.stream} v{finding.stream_version}]" if finding.stream else ""
            lines.append(f"  position {finding.position:,}  {finding.kind:9}  {finding.detail}{where}")
        if report.problems > len(report.findings):
            lines.append(f"  ... and {report.problems - len(report.findings):,} more")
    return "\n".join(lines) + "\n"


def _verify_views(args: argparse.Namespace, store: Any, settings: Settings) -> int:
    from application import verify_views

    if args.expect_head:
        raise UsageError("--expect-head checks the chain; run it without --views")
    try:
        if args.api:
            key = settings.api_key.get_secret_value() if settings.api_key is not None else None
            comparison = verify_views.compare_with_api(store, args.api, api_key=key)
        else:
            from consumers.cli.views import snapshot_folder

            folder = snapshot_folder(settings.data, args.store or settings.store_url)
            comparison = verify_views.compare_with_cli_views(store, folder)
    except verify_views.LiveViewsUnavailable as error:
        raise UsageError(str(error)) from None
    if args.format == "json":
        sys.stdout.write(orjson.dumps(comparison.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(verify_views.render(comparison))
    return 0 if comparison.same else 1


# --- helpers ---------------------------------------------------------------------------------




class _progress_bar:
    """A tqdm bar on stderr (rate and ETA) when stderr is a terminal and not ``--quiet``."""

    def __init__(self, store: Any, description: str, *, quiet: bool):
        self.bar = None
        if quiet or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        self.bar = tqdm(total=store.count(), unit="ev", unit_scale=True, desc=description,
                        file=sys.stderr, leave=False, smoothing=0.1)

    def __enter__(self) -> Callable[[int], None] | None:
        return self.bar.update if self.bar is not None else None

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
