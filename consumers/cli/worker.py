"""``touchpoints worker``: one Faust worker of the stream processors.

It folds ``touchpoints.events`` into per-identity journeys (published to
``touchpoints.journeys``) and appends what services produce to
``touchpoints.inbound`` to the store. Start several to share the partitions.
Needs ``TOUCHPOINTS_KAFKA`` (``touchpoints up`` sets it to the bundled broker).
SIGINT/SIGTERM stop it cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from consumers.cli.logs import configure_logging
from application.settings import Settings, SettingsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a stream-processor worker (Faust): journeys and Kafka ingestion",
        description="Run one Faust worker: the journey processor (touchpoints.events -> "
        "touchpoints.journeys) and the inbound agent (touchpoints.inbound -> the store, invalid "
        "records -> touchpoints.deadletter). Kafka from TOUCHPOINTS_KAFKA, store from TOUCHPOINTS_STORE.",
    )
    parser.add_argument("--kafka", metavar="BOOTSTRAP", help="Kafka bootstrap servers (default TOUCHPOINTS_KAFKA)")
    parser.add_argument("--store", metavar="URL", help="event store URL (default TOUCHPOINTS_STORE)")
    parser.add_argument("--no-inbound", action="store_true", help="do not run the Kafka ingestion agent")
    parser.add_argument("--no-processors", action="store_true", help="do not run the journey processor")
    parser.add_argument("--stats-file", metavar="PATH", help="write the worker's stats (JSON) here every second")
    parser.add_argument("--no-trim", action="store_true",
                        help="do not delete records every group committed past (for a broker without DeleteRecords, "
                        "such as the bundled one)")
    parser.add_argument("--group", default=None, help=argparse.SUPPRESS)  # benchmarks: a fresh consumer group
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"touchpoints worker: {error}", file=sys.stderr)
        return 2
    bootstrap = args.kafka or settings.kafka
    if not bootstrap:
        print("touchpoints worker: TOUCHPOINTS_KAFKA: required (Kafka bootstrap servers, e.g. 127.0.0.1:9092; "
              "`touchpoints up` starts a bundled broker and sets it)", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    return work(settings, bootstrap=bootstrap, store_url=args.store or settings.store_url,
                inbound=not args.no_inbound, processors=not args.no_processors, group=args.group,
                stats_file=args.stats_file, trim=not args.no_trim)


def work(settings: Settings, *, bootstrap: str, store_url: str, inbound: bool = True, processors: bool = True,
         group: str | None = None, stats_file: str | None = None, trim: bool = True) -> int:
    import faust
    from kafka.errors import KafkaError

    from application.allocator import tune_allocator
    from application.collector import tune_for_a_long_running_process
    from application.privacy.keys import KeyStoreError
    from application.privacy.mode import settle
    from events.factory import open_store
    from events.registry import REGISTRY
    from events.store import EventStoreError
    from streams.app import create_app
    from streams.processors import PROCESSOR_GROUP
    from streams.topics import APP_ID, TopicError, ensure_topics

    tune_allocator()  # before any thread starts: see application.allocator
    REGISTRY.load_plugins()
    try:
        # before Faust subscribes: it would create missing topics with its own defaults
        ensure_topics(bootstrap, settings.partitions)
    except (TopicError, KafkaError, OSError) as error:
        print(f"touchpoints worker: Kafka at {bootstrap} (TOUCHPOINTS_KAFKA): {error}", file=sys.stderr)
        return 1
    store = None
    if inbound:
        try:
            store = open_store(store_url)
        except (EventStoreError, ValueError) as error:
            print(f"touchpoints worker: cannot open the store {store_url}: {error}", file=sys.stderr)
            return 2
        try:
            settings = settle(settings, store)  # the inbound agent seals as the log was started
        except KeyStoreError as error:
            store.close()
            print(f"touchpoints worker: {error}", file=sys.stderr)
            return 2
    processor_group, app_id = group or PROCESSOR_GROUP, f"{APP_ID}-{group}" if group else APP_ID
    app = create_app(settings, bootstrap=bootstrap, store=store, processors=processors,
                     processor_group=processor_group, app_id=app_id)
    if trim:
        _trim_committed_records(app, bootstrap, processor_group=processor_group, app_id=app_id)
    if stats_file:
        _write_stats_every_second(app, Path(stats_file))
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False)
    tune_for_a_long_running_process()  # the journeys it holds are scanned by no full collection
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        if store is not None:
            store.close()
    return 0


def _trim_committed_records(app, bootstrap: str, *, processor_group: str, app_id: str) -> None:
    """Delete, every ``RecordTrimmer.interval`` seconds, what the groups reading the events and
    inbound topics have all committed past (the worker runs those groups, so it knows them)."""
    import asyncio

    from streams.retention import RecordTrimmer
    from streams.topics import EVENTS_TOPIC, INBOUND_TOPIC

    trimmer = app.trimmer = RecordTrimmer(bootstrap, {EVENTS_TOPIC: [processor_group], INBOUND_TOPIC: [app_id]})

    @app.timer(trimmer.interval)
    async def trim_committed_records() -> None:
        await asyncio.to_thread(trimmer.run_once)


def _write_stats_every_second(app, path: Path) -> None:
    """The worker's stats as JSON (atomically replaced), for ``touchpoints up``'s /healthz."""
    import orjson

    path.parent.mkdir(parents=True, exist_ok=True)

    @app.timer(1.0)
    async def write_worker_stats() -> None:
        temporary = path.with_suffix(".tmp")
        stats = {"pid": os.getpid(), "at": time.time(), **app.worker_stats()}
        temporary.write_bytes(orjson.dumps(stats, option=orjson.OPT_NON_STR_KEYS))  # partitions as keys
        os.replace(temporary, path)
