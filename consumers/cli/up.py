"""``touchpoints up``: the whole live platform on one machine (what ``make run`` starts).

The SQLite store, the bundled Kafka broker on a free loopback port (unless
``TOUCHPOINTS_KAFKA`` names a cluster), the topics, demo data in an empty store
(unless ``TOUCHPOINTS_DEMO=0``), the relay and a Faust worker as child processes
(restarted if they die), and the HTTP API with live views fed from
``touchpoints.journeys``. Ctrl-C or SIGTERM stops everything and exits 0.
"""

from __future__ import annotations

import argparse
import sys

from consumers.cli.logs import configure_logging
from consumers.settings import Settings, SettingsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the whole live platform: store, broker, relay, worker, API",
        description="Run the event store, a Kafka-protocol broker (the bundled tansu on a free loopback port "
        "unless TOUCHPOINTS_KAFKA is set), the relay, a Faust worker and the HTTP API with live views. "
        "An empty store gets the demo data set unless TOUCHPOINTS_DEMO=0. Ctrl-C stops everything.",
    )
    parser.add_argument("--host", help="API listen address (default TOUCHPOINTS_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="API port, 0 for a free one (default TOUCHPOINTS_PORT or 8000)")
    parser.add_argument("--no-demo", action="store_true", help="never load the demo data set")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"touchpoints up: {error}", file=sys.stderr)
        return 2
    overrides = {
        "host": args.host if args.host is not None else settings.host,
        "port": args.port if args.port is not None else settings.port,
        "demo": settings.demo and not args.no_demo,
    }
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level)
    from streams.platform import run_platform

    return run_platform(settings)
