"""``touchpoints serve``: the HTTP API alone, on the configured store.

Where its live views come from depends on ``TOUCHPOINTS_KAFKA``: unset, they are folded
straight from the store (``application.store_feed``); set (production, compose), they follow
the journeys the stream processors publish (``streams.view_feed``), so the API serves what
the workers maintain and no relay or worker is started here (``touchpoints up`` does that).
An empty store gets the demo data set first unless ``TOUCHPOINTS_DEMO=0``. As ``touchpoints up``,
it prints the admin key at first start (unless ``TOUCHPOINTS_ADMIN_KEY`` is set) and a one-time
dashboard login link.
"""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import ExitStack

from consumers.cli.common import add_server_flags, settings_for_server
from application.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP API alone (views from the store, or from Kafka when TOUCHPOINTS_KAFKA is set)",
        description="Serve the ingestion API, the log, schemas, health and the live views on the store "
        "named by TOUCHPOINTS_STORE (default: the SQLite file in TOUCHPOINTS_DATA). An empty store is "
        "first loaded with TOUCHPOINTS_DEMO_CUSTOMERS demo customers unless TOUCHPOINTS_DEMO=0.",
    )
    add_server_flags(parser)
    parser.add_argument("--store", metavar="URL", help="event store URL (default TOUCHPOINTS_STORE)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_for_server("serve", args)
    if settings is None:
        return 2
    return serve(settings)


def serve(settings: Settings) -> int:
    from application.allocator import tune_allocator
    from application.access import open_access
    from application.access.store import AccessStoreError
    from consumers.api.app import create_app, journeys_views_health
    from streams.log_tails import PartitionTails
    from consumers.cli.keys import first_start_lines, login_link_line
    from consumers.api.server import (
        base_url,
        bind_socket,
        make_server,
        tune_for_reads,
        tune_gc_for_throughput,
    )
    from application.demo import load_demo_if_empty
    from application.live_views import LiveViews
    from application.privacy.keys import KeyStoreError
    from application.privacy.mode import settle
    from application.journey_spill import views_journeys_folder
    from application.view_documents import documents_path
    from application.view_state import TAKE_UP_TIMEOUT, log_holds, save_on_stop, state_folder
    from events.factory import open_store
    from events.registry import REGISTRY
    from events.store import EventStoreError

    tune_allocator()  # before any thread starts: see application.allocator
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: make SIGTERM
    # a KeyboardInterrupt too, so stores and feeds close and the exit status is 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    REGISTRY.load_plugins()
    with ExitStack() as stack:
        try:
            sock = bind_socket(settings.host, settings.port)
        except OSError as error:
            print(f"touchpoints serve: {error.strerror or error} (TOUCHPOINTS_HOST/TOUCHPOINTS_PORT)", file=sys.stderr)
            return 2
        stack.callback(sock.close)
        try:
            store = open_store(settings.store_url)
        except (EventStoreError, ValueError) as error:
            print(f"touchpoints serve: cannot open the store {settings.store_url}: {error}", file=sys.stderr)
            return 2
        stack.callback(store.close)
        try:
            settings = settle(settings, store)  # the log's sealing mode
        except KeyStoreError as error:
            print(f"touchpoints serve: {error}", file=sys.stderr)
            return 2
        try:
            access = open_access(settings.data)
            stack.callback(access.close)
            first_start = first_start_lines(access, settings)
        except (AccessStoreError, ValueError) as error:
            print(f"touchpoints serve: {error}", file=sys.stderr)
            return 2
        loaded = load_demo_if_empty(store, settings)
        if loaded:
            print(f"loaded {loaded} demo events ({settings.demo_customers} customers) into the empty store",
                  flush=True)
        views = stack.enter_context(LiveViews(documents_path=documents_path(settings.data),
                                              journeys_folder=views_journeys_folder(settings),
                                              contributions_on_disk=settings.views_contributions_on_disk,
                                              state_folder=state_folder(settings.data)))
        # what the last clean stop saved: taken up once the API listens, the saved documents served meanwhile
        saved = views.find_state(holds=log_holds(store), feed="kafka" if settings.kafka else "store")
        feed = _feed(settings, store, views)
        stack.callback(save_on_stop, views, feed, store)  # once the feed stopped (the stack unwinds in reverse)
        stack.callback(feed.stop)
        checks = {"view_feed": feed.stats}
        # The documents saved before a restart are served until the feed caught up with them (or the
        # state was taken up): a store feed's fold is a watermark; over Kafka, the journeys applied
        # must hold every partition's last event up to them, as their fold marks say.
        ready = lambda: feed.stats().get("caught_up", True)  # noqa: E731
        if settings.kafka:
            tails = PartitionTails(store)
            checks["kafka"] = lambda: {"bootstrap": settings.kafka, "bundled": False}
            checks["views"] = lambda: journeys_views_health(views, store, feed, tails)
            ready = lambda: _holds_restored(views, feed, tails)  # noqa: E731
        views.restore_documents(head=store.head_position(), ready=ready)
        app = create_app(store=store, settings=settings, views=views, health_checks=checks, access=access)
        server = make_server(app, log_level=settings.log_level)
        stack.callback(app.state.body_decoder.close)
        app.state.body_decoder.start()
        tune_gc_for_throughput()
        tune_for_reads(settings)
        # once the app is built: its imports do not wait for the GIL behind the fold
        if saved is None:
            feed.start()
        else:
            taking_up = views.take_up_then_feed(saved, feed)
            stack.callback(taking_up.join, TAKE_UP_TIMEOUT)  # it starts the feed once done
        url = base_url(sock)
        try:
            for line in first_start:
                print(line, flush=True)
            print(login_link_line(access, url), flush=True)
            print(f"touchpoints API listening on {url} (docs: {url}/docs, health: {url}/healthz)", flush=True)
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
    return 0


def _holds_restored(views, feed, tails) -> bool:
    """The Kafka view feed read the journeys to the end and they hold every event up to the
    restored documents' position (``consumers.api.app.held_through``)."""
    from consumers.api.app import held_through

    stats = feed.stats()
    restored = views.restored_status()
    if not stats.get("caught_up") or stats["partitions"] == 0:
        return False
    position = restored["position"] if restored is not None else None
    return held_through(tails.through(position, stats["partitions"]), feed.folded_positions(), feed.lag())


def _feed(settings: Settings, store, views):
    """The feed of the live views (not started: a context manager that starts it). A store
    feed starts after the views' position, the Kafka one where ``resume_from`` says."""
    if settings.kafka:
        from streams.view_feed import ViewFeed

        return ViewFeed(settings.kafka, views)
    from application.store_feed import StoreFeed

    return StoreFeed(store, views)
