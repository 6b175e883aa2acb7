"""``touchpoints attribution | first-contact | conversion-time | paths | timeline ID |
customers | prospects | funnel | data-quality``: the marketing views on the command line.

They read the event store directly (no server needed): the log is folded into the same
``LiveViews`` the API serves, so ``--format json`` prints the very document the API
returns for the same parameters. A snapshot of the folded journeys is kept in
``<TOUCHPOINTS_DATA>/cache/views/`` (keyed by the store URL, checked against the log)
so the next command folds only the events appended since; ``--no-cache`` skips it.

Exit codes: 0 success, 1 unknown customer or analytics consent withdrawn (``timeline``), 2 bad arguments or
parameters, unusable settings or an unreachable store.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from application.settings import Settings, SettingsError
from consumers.cli.common import UsageError, open_store
from projections.attribution import MODELS

FORMATS = ("table", "json", "csv")


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("data and output")
    group.add_argument("--store", metavar="URL", help="event store URL (default TOUCHPOINTS_STORE)")
    group.add_argument("--format", choices=FORMATS, default="table",
                       help="table (readable, default), json (the API's document) or csv (the rows)")
    group.add_argument("--as-of", metavar="T", help="only events that occurred up to T (inclusive; an RFC 3339 "
                       "time with an offset, or a date = the end of that day UTC), replayed from the log")
    group.add_argument("--known-at", metavar="T", help="only events the log had recorded up to T (same format)")
    group.add_argument("--no-cache", action="store_true", help="fold the whole log; neither read nor write a snapshot")
    group.add_argument("--quiet", action="store_true", help="no progress bar")

    def add(name: str, help: str, handler: Callable[[argparse.Namespace], dict[str, Any] | None]) -> argparse.ArgumentParser:
        epilog = TIMELINE_EPILOG if name == "timeline" else EPILOG
        parser = subparsers.add_parser(name, help=help, description=help + ". " + epilog, parents=[common],
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.set_defaults(handler=lambda args: run(args, handler, name))
        return parser

    attribution = add("attribution", "Multi-touch attribution of conversions per channel or campaign", _attribution)
    attribution.add_argument("--model", choices=MODELS, default="linear", help="attribution model (default linear)")
    _window(attribution, "conversions")
    attribution.add_argument("--lookback-days", type=float, metavar="N",
                             help="only touches within N days before the conversion count")
    attribution.add_argument("--group-by", choices=("channel", "campaign", "source"), default="channel",
                             help="credit channels, campaigns or sources (default channel)")
    attribution.add_argument("--half-life-days", type=float, default=7.0, metavar="D",
                             help="time_decay: days for a touch's weight to halve (default 7)")

    first = add("first-contact", "First contact per channel: reached, converted, revenue", _first_contact)
    first.add_argument("--group-by", choices=("channel", "campaign", "source"), default="channel",
                       help="group by the first contact's channel, campaign or source (default channel)")
    _window(first, "first contacts")

    conversion = add("conversion-time", "Days from first contact to conversion per first channel", _conversion_time)
    conversion.add_argument("--group-by", choices=("first_channel", "first_campaign", "first_source"),
                            default="first_channel",
                            help="group by the first contact's channel, campaign or source (default first_channel)")
    _now(conversion)

    paths = add("paths", "Top conversion paths", _paths)
    paths.add_argument("--top", type=int, default=20, metavar="N", help="how many paths (default 20)")
    paths.add_argument("--no-collapse-repeats", dest="collapse_repeats", action="store_false",
                       help="keep consecutive repeats (instagram > instagram)")
    paths.add_argument("--lookback-days", type=float, metavar="N",
                       help="only touches within N days before the conversion (default: no limit)")
    paths.add_argument("--group-by", choices=("channel", "campaign", "source"), default="channel",
                       help="paths of channels, campaigns or sources (default channel)")
    _window(paths, "conversions")

    timeline = add("timeline", "Every event of a customer across all linked identities", _timeline)
    timeline.add_argument("id", help="a customer id, any linked anonymous id, or a stream name")

    customers = add("customers", "The most valuable customers", _customers)
    customers.add_argument("--by", choices=("revenue", "orders", "rfm"), default="revenue",
                           help="rank by net revenue, order count or RFM score (default revenue)")
    customers.add_argument("--limit", type=int, default=20, metavar="N", help="how many customers (default 20)")
    _now(customers)

    prospects = add("prospects", "Prospects: reached, no order yet", _prospects)
    prospects.add_argument("--limit", type=int, default=100, metavar="N", help="how many prospects (default 100)")
    prospects.add_argument("--channel", help="only prospects first reached on this channel")
    _now(prospects)

    add("funnel", "From reached to converted to repeat buyers", _funnel)
    quality = add("data-quality", "Identity conflicts, unknown refunds and other data problems", _data_quality)
    quality.add_argument("--limit", type=int, default=100, metavar="N", help="examples listed per problem")


EPILOG = "Reads the event store directly; exit 0 ok, 2 bad arguments or store."
TIMELINE_EPILOG = ("Reads the event store directly; exit 0 ok, 1 unknown customer or analytics consent withdrawn, "
                   "2 bad arguments or store.")


def _window(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--from", dest="start", metavar="T", help=f"{what} from T (inclusive; time or date, UTC)")
    parser.add_argument("--to", dest="end", metavar="T", help=f"{what} before T (exclusive)")


def _now(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", metavar="T", help="measure ages to T (default: the newest event's time)")


# --- the commands: each returns the document to print ------------------------------------


def _attribution(args: argparse.Namespace) -> dict[str, Any]:
    return _view(args, "attribution", model=args.model, lookback_days=args.lookback_days, group_by=args.group_by,
                 start=_moment("from", args.start), end=_moment("to", args.end),
                 half_life_days=args.half_life_days if args.model == "time_decay" else None)


def _first_contact(args: argparse.Namespace) -> dict[str, Any]:
    return _view(args, "first_contact", group_by=args.group_by, start=_moment("from", args.start),
                 end=_moment("to", args.end))


def _conversion_time(args: argparse.Namespace) -> dict[str, Any]:
    return _view(args, "conversion_time", group_by=args.group_by, now=_moment("now", args.now))


def _paths(args: argparse.Namespace) -> dict[str, Any]:
    return _view(args, "paths", top=args.top, collapse_repeats=args.collapse_repeats,
                 lookback_days=args.lookback_days, group_by=args.group_by,
                 start=_moment("from", args.start), end=_moment("to", args.end))


def _customers(args: argparse.Namespace) -> dict[str, Any]:
    return _view(args, "top_customers", by=args.by, limit=args.limit, now=_moment("now", args.now))


def _prospects(args: argparse.Namespace) -> dict[str, Any]:
    return _view(args, "prospects", limit=args.limit, channel=args.channel, now=_moment("now", args.now))


def _funnel(args: argparse.Namespace) -> dict[str, Any]:
    return _view(args, "funnel")


def _data_quality(args: argparse.Namespace) -> dict[str, Any]:
    return _view(args, "data_quality", limit=args.limit)


def _timeline(args: argparse.Namespace) -> dict[str, Any] | None:
    from application.privacy.reading import timeline
    from application.store_feed import read_member_events

    views, store, as_of, known_at = args.loaded
    return timeline(views, args.id, lambda streams: read_member_events(store, streams, as_of=as_of, known_at=known_at),
                    args.sealing)


def _view(args: argparse.Namespace, name: str, **params: Any) -> dict[str, Any]:
    views = args.loaded[0]
    return views.view(name, **params).document


def _moment(param: str, value: str | None) -> datetime | None:
    from projections import parameters

    return parameters.moment(param, value)


# --- running one command ----------------------------------------------------------------


def run(args: argparse.Namespace, command: Callable[[argparse.Namespace], dict[str, Any] | None], name: str) -> int:
    from application.privacy.keys import KeyStoreError
    from application.privacy.mode import settle
    from application.privacy.reading import ConsentWithdrawn
    from projections.parameters import ViewParameterError

    prog = f"touchpoints {name}"
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    try:
        with open_store(args.store or settings.store_url) as store:
            args.loaded = _load(args, store, settings)
            args.sealing = settle(settings, store).sealing  # timelines opened where keys exist
            document = command(args)
            if document is None:
                print(f"{prog}: no customer or identity {args.id!r}", file=sys.stderr)
                return 1
            output = render(document, args.format, name)
    except (UsageError, ViewParameterError, KeyStoreError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    except ConsentWithdrawn as error:  # as for an unknown customer: nothing to show
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(output)
    return 0


def render(document: dict[str, Any], fmt: str, name: str) -> str:
    """The output of a command: the API's JSON document, its rows as CSV, or a table."""
    from application import exports

    if fmt == "json":
        return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    rows = "events" if name == "timeline" else "stages" if name == "funnel" else None
    if fmt == "csv":
        try:
            return exports.to_csv(document, preferred_rows=rows)
        except exports.NotAListView:
            raise UsageError("this view has no list of rows to export as CSV; use --format json or table") from None
    if name == "timeline":
        document = _readable_timeline(document)
    return exports.to_table(document, title=TITLES.get(name, name), preferred_rows=rows)


TITLES = {
    "attribution": "Attribution", "first-contact": "First contact", "conversion-time": "Conversion time",
    "paths": "Top conversion paths", "timeline": "Customer timeline", "customers": "Top customers",
    "prospects": "Prospects", "funnel": "Funnel", "data-quality": "Data quality",
}


def _readable_timeline(document: dict[str, Any]) -> dict[str, Any]:
    """The timeline with one short line per event (the JSON keeps every field)."""
    events = [
        {
            "occurred_at": event["occurred_at"],
            "type": event["type"],
            "channel": event["channel"],
            "campaign": event["campaign"],
            "identity": event["identity"],
            "details": " ".join(f"{key}={value}" for key, value in event["data"].items()),
        }
        for event in document["events"]
    ]
    return {**document, "events": events}




def _load(args: argparse.Namespace, store: Any, settings: Settings) -> tuple[Any, Any, Any, Any]:
    """The views to answer from: the live log folded (with the snapshot), or a point in time."""
    from application.replay import point_in_time
    from application.store_feed import load_views

    as_of = point_in_time("as_of", args.as_of)
    known_at = point_in_time("known_at", args.known_at)
    if as_of is not None or known_at is not None:
        return point_in_time_views(store, as_of, known_at, quiet=args.quiet), store, as_of, known_at
    folder = None if args.no_cache else snapshot_folder(settings.data, args.store or settings.store_url)
    progress = _progress_bar(store, quiet=args.quiet)
    try:
        views = load_views(store, snapshot_dir=folder, progress=progress)
    finally:
        if progress is not None:
            progress.close()  # type: ignore[attr-defined]
    return views, store, None, None


def point_in_time_views(store: Any, as_of: datetime | None, known_at: datetime | None, *, quiet: bool = False) -> Any:
    """Views rebuilt by the audit replay at ``as_of``/``known_at`` (``application.replay``)."""
    from application.replay import replay_views

    progress = _progress_bar(store, quiet=quiet)
    try:
        return replay_views(store, as_of=as_of, known_at=known_at, progress=progress, freeze=True)
    finally:
        if progress is not None:
            progress.close()  # type: ignore[attr-defined]


def snapshot_folder(data: Path, store_url: str) -> Path:
    """One snapshot folder per store URL under the data folder."""
    return data / "cache" / "views" / hashlib.sha256(store_url.encode()).hexdigest()[:16]


def _progress_bar(store: Any, *, quiet: bool) -> Any:
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=store.count(), unit="ev", unit_scale=True, desc="reading the log",
               file=sys.stderr, leave=False)

    class Progress:
        def __call__(self, n: int) -> None:
            bar.update(n)

        def close(self) -> None:
            bar.close()

    return Progress()
