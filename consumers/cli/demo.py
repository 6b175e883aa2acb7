"""``touchpoints demo``: write the deterministic demo journeys as NDJSON (the wire format)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import orjson

from application.demo import DEFAULT_END, DEFAULT_SEED, generate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate realistic demo journeys as NDJSON",
        description="Generate multi-year customer journeys (social follows, ads, e-mail, web, store, "
        "orders, refunds, support, late identity links, merges, consent) in the wire format, one event "
        "per line. The same --customers/--seed/--start-year/--end-year always give the same bytes. "
        "Pipe into `touchpoints ingest -` or save with --out.",
    )
    parser.add_argument("--customers", type=_positive, default=1000, metavar="N", help="people to generate (default 1000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S", help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", default="-", metavar="FILE", help="output file, '-' for stdout (default)")
    parser.add_argument("--start-year", type=_year, default=2022, metavar="Y", help="first year of journeys (default 2022)")
    parser.add_argument("--end-year", type=_year, default=DEFAULT_END.year, metavar="Y",
                        help=f"journeys end on 1 January of this year (default {DEFAULT_END.year})")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    start = datetime(args.start_year, 1, 1, tzinfo=timezone.utc)
    end = datetime(args.end_year, 1, 1, tzinfo=timezone.utc)
    if end <= start:
        print("touchpoints demo: --end-year must be after --start-year", file=sys.stderr)
        return 2
    try:
        out = sys.stdout.buffer if args.out == "-" else Path(args.out).open("wb")
    except OSError as error:
        print(f"touchpoints demo: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    count = 0
    try:
        buffer: list[bytes] = []
        for event in generate(args.customers, args.seed, start=start, end=end):
            buffer.append(orjson.dumps(event))
            count += 1
            if len(buffer) >= 4096:
                out.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            out.write(b"\n".join(buffer) + b"\n")
        out.flush()
    except BrokenPipeError:
        # the reader (e.g. `head`) stopped early: not an error; keep the exit flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    if args.out != "-":
        print(f"wrote {count} events for {args.customers} customers to {args.out}", file=sys.stderr)
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _year(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a year, got {text!r}") from None
    if not 1971 <= value <= 9998:
        raise argparse.ArgumentTypeError(f"expected a year between 1971 and 9998, got {value}")
    return value
