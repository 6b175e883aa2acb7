"""``touchpoints up``: the whole live platform on one machine (what ``make run`` starts).

The SQLite store, the bundled Kafka broker on a free loopback port (unless
``TOUCHPOINTS_KAFKA`` names a cluster), the topics, demo data in an empty store
(unless ``TOUCHPOINTS_DEMO=0``), the relay and a Faust worker as child processes
(restarted if they die), and the HTTP API with live views fed from
``touchpoints.journeys``. Ctrl-C or SIGTERM stops everything and exits 0.

At first start (no admin key in ``<data>/access.db``) it makes the admin key and prints it
once (or registers ``TOUCHPOINTS_ADMIN_KEY``); every start prints a one-time dashboard login
link (``consumers.cli.keys``).
"""

from __future__ import annotations

import argparse

from consumers.cli.common import add_server_flags, settings_for_server


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the whole live platform: store, broker, relay, worker, API",
        description="Run the event store, a Kafka-protocol broker (the bundled tansu on a free loopback port "
        "unless TOUCHPOINTS_KAFKA is set), the relay, a Faust worker and the HTTP API with live views. "
        "An empty store gets the demo data set unless TOUCHPOINTS_DEMO=0. The first start prints the admin key "
        "once (or takes TOUCHPOINTS_ADMIN_KEY); every start prints a one-time dashboard login link. "
        "Ctrl-C stops everything.",
    )
    add_server_flags(parser, what="API listen")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_for_server("up", args)
    if settings is None:
        return 2
    from consumers.platform import run_platform

    return run_platform(settings)
