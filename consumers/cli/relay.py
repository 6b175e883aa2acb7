"""``touchpoints relay``: publish the event log to Kafka (``touchpoints.events``), resuming
from its durable checkpoint. Exactly one relay should run per store and topic."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

import orjson

from consumers.cli.logs import configure_logging
from application.settings import Settings, SettingsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "relay",
        help="publish the event log to Kafka (touchpoints.events), at least once",
        description="Read the event store in global order from the relay's checkpoint and publish every "
        "event to the events topic, keyed by identity stream. The checkpoint (<TOUCHPOINTS_DATA>/relay.db) "
        "is saved only after the broker acknowledged, so a crashed relay resumes without losing events. "
        "If the broker lost the topic's data (a restarted memory broker), the log is republished from the "
        "start. SIGTERM or Ctrl-C stops it after the page in flight.",
    )
    parser.add_argument("--kafka", metavar="HOST:PORT", help="bootstrap servers (default TOUCHPOINTS_KAFKA)")
    parser.add_argument("--store", metavar="URL", help="event store URL (default TOUCHPOINTS_STORE)")
    parser.add_argument("--checkpoint", metavar="PATH", type=Path,
                        help="checkpoint file (default <TOUCHPOINTS_DATA>/relay.db)")
    parser.add_argument("--topic", default=None, help="topic to publish to (default touchpoints.events)")
    parser.add_argument("--partitions", type=int, help="partitions when creating the topic (default TOUCHPOINTS_PARTITIONS)")
    parser.add_argument("--batch-size", type=int, default=2000, help="events per acknowledged page (default 2000)")
    parser.add_argument("--reset", action="store_true", help="forget the checkpoint: republish from position 0")
    parser.add_argument("--stats-interval", type=float, default=10.0, metavar="SECONDS",
                        help="log the relay's stats this often (0: never; default 10)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"touchpoints relay: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if settings.log_level != "DEBUG":
        # kafka-python logs every dropped connection with a traceback; the relay reports its own errors
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    bootstrap = (args.kafka or settings.kafka).removeprefix("kafka://")
    if not bootstrap:
        print("touchpoints relay: no Kafka broker: set TOUCHPOINTS_KAFKA or pass --kafka HOST:PORT "
              "(`touchpoints broker` runs the bundled one; `touchpoints up` runs everything)", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"touchpoints relay: --batch-size must be at least 1, got {args.batch_size}", file=sys.stderr)
        return 2

    from events.factory import open_store
    from events.store import EventStoreError
    from streams.checkpoint import SqliteCheckpointStore
    from streams.relay import Relay
    from streams.topics import EVENTS_TOPIC

    topic = args.topic or EVENTS_TOPIC
    try:
        store = open_store(args.store or settings.store_url)
    except (EventStoreError, ValueError) as error:
        print(f"touchpoints relay: {error}", file=sys.stderr)
        return 2
    checkpoints = SqliteCheckpointStore(args.checkpoint or settings.data / "relay.db")
    try:
        if args.reset:
            checkpoints.reset(topic)
        relay = Relay(store, bootstrap, checkpoints, topic=topic, batch_size=args.batch_size,
                      partitions=args.partitions or settings.partitions, compression=settings.kafka_compression)
        _stop_on_signals(relay)
        reporter = _start_stats_reporter(relay, args.stats_interval)
        relay.run()
        if reporter is not None:
            reporter.set()
        print(orjson.dumps(relay.stats()).decode(), flush=True)
        return 0
    finally:
        checkpoints.close()
        store.close()


def _stop_on_signals(relay) -> None:
    def stop(signum, frame) -> None:
        logging.getLogger(__name__).info("relay: %s received, stopping", signal.Signals(signum).name)
        relay.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _start_stats_reporter(relay, interval: float) -> threading.Event | None:
    if interval <= 0:
        return None
    done = threading.Event()
    log = logging.getLogger("streams.relay")

    def report() -> None:
        while not done.wait(interval):
            log.info("relay stats: %s", orjson.dumps(relay.stats()).decode())

    threading.Thread(target=report, name="relay-stats", daemon=True).start()
    return done
