"""A planned restart of the bundled broker: the compaction its memory engine lacks.

tansu 0.6.0 keeps every record it was given until it stops (``streams.broker``): at a
million customers ~1.7 GiB after the backfill's catch-up, three quarters of it events the
store holds anyway (docs/DECISIONS.md, "What Kafka keeps"). ``touchpoints up`` therefore
restarts it when its resident memory passes ``TOUCHPOINTS_BROKER_MEMORY_BUDGET`` (or half of
it once the log took no event for ``IDLE_SECONDS`` and the views are at its head: the
pipeline's pause costs no freshness then, and the next burst finds an empty broker), through
the path a restarted platform takes already (``streams.worker_state``): the worker stops
cleanly and saves its journeys, the view feed reads the journeys it published last, the
broker restarts empty, the saved journeys are handed over, so the relay publishes only the
events after them and the journeys topic holds only the changes over them.

What else lives only in the broker is carried over here: the ``touchpoints.inbound``
records no inbound reader has committed past (services produced them; the store does not
hold them yet) and every dead letter. They are read once the worker has stopped and put
back, in their partitions, before it starts again. A record a service produces between
that read and the broker's stop (a few milliseconds) would be lost, so the restart waits
until the inbound topic's end offsets have not moved for ``INBOUND_QUIET_SECONDS``: a
platform whose services produce to the bundled broker without pause is never restarted,
and ``/healthz`` says why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.topics import DEADLETTER_TOPIC, INBOUND_TOPIC, close_admin, describe_topics, end_offsets

CHECK_INTERVAL = 5.0  # seconds between looks at the broker's memory
INBOUND_QUIET_SECONDS = 10.0  # the inbound topic took no record for this long before a restart
IDLE_SECONDS = 30.0  # the log took no event for this long: a restart over IDLE_FRACTION of the budget goes unnoticed
IDLE_FRACTION = 0.5
MIN_SECONDS_BETWEEN = 60.0  # a budget the journeys alone fill does not restart the broker in a loop
PUT_BACK_TIMEOUT = 30.0  # seconds to produce the records carried over

Record = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]  # partition, key, value, headers


def resident_mib(pid: int | None) -> float | None:
    """A process's resident memory in MiB (None: no such process, or not Linux)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Carried:
    """Records read from the old broker, by topic, to put back into the new one."""

    records: dict[str, list[Record]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(records) for records in self.records.values())


def _admin(bootstrap: str) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000,
                            client_id="touchpoints-broker-recycle")


def inbound_ends(bootstrap: str, topic: str = INBOUND_TOPIC) -> dict[int, int]:
    """The inbound topic's end offsets (empty: no such topic), to see whether records came: on
    tansu ListOffsets answers the last batch's base offset + 1, short of the end but moved by
    every batch produced."""
    admin = _admin(bootstrap)
    try:
        described = describe_topics(admin, [topic]).get(topic)
        return end_offsets(admin, topic, described[1]) if described else {}
    finally:
        close_admin(admin, "broker recycle")


def read_unconsumed(bootstrap: str, *, inbound_groups: Sequence[str], inbound_topic: str = INBOUND_TOPIC,
                    deadletter_topic: str = DEADLETTER_TOPIC) -> Carried:
    """The inbound records past what every reader of ``inbound_topic`` committed
    (``streams.retention.trim_points``: ``inbound_groups`` and any group with a commit
    there) and every dead letter, each partition read to the end its fetches report
    (``streams.reading.read_to_end``: tansu's ListOffsets falls short of it)."""
    from streams.retention import trim_points

    admin = _admin(bootstrap)
    try:
        described = describe_topics(admin, [inbound_topic, deadletter_topic])
        starts: dict[tuple[str, int], int] = {}
        if inbound_topic in described:
            starts.update(((inbound_topic, p), start) for p, start in trim_points(admin, inbound_topic, inbound_groups).items())
        if deadletter_topic in described:
            starts.update(((deadletter_topic, p), 0) for p in described[deadletter_topic][1])
    finally:
        close_admin(admin, "broker recycle")
    carried = Carried()
    if starts:
        for (topic, partition), records in sorted(asyncio.run(_read_from(bootstrap, starts)).items()):
            if records:
                carried.records.setdefault(topic, []).extend(
                    (partition, r.key, r.value, [(name, bytes(value)) for name, value in r.headers or ()])
                    for r in records)
    return carried


async def _read_from(bootstrap: str, starts: dict[tuple[str, int], int]) -> dict[tuple[str, int], list[Any]]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    from streams.reading import read_to_end

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                client_id="touchpoints-broker-recycle", request_timeout_ms=10_000)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, partition) for topic, partition in starts]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, starts[(tp.topic, tp.partition)])
        found = await read_to_end(consumer, tps)
        return {(tp.topic, tp.partition): records for tp, records in found.items()}
    finally:
        await consumer.stop()


def put_back(bootstrap: str, carried: Carried, *, compression: str = "zstd") -> int:
    """Produce ``carried`` into the (new) broker, each record in its partition, in order."""
    if not carried.count:
        return 0
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="touchpoints-broker-recycle",
                             compression_type=None if compression == "none" else compression,
                             max_in_flight_requests_per_connection=1)  # order kept within a partition
    try:
        for topic, records in carried.records.items():
            # a service that produced first may have had the topic created with the broker's default partitions
            partitions = producer.partitions_for(topic) or set()
            for partition, key, value, headers in records:
                producer.send(topic, key=key, value=value, headers=headers,
                              partition=partition if partition in partitions else None)
        producer.flush(PUT_BACK_TIMEOUT)
    finally:
        producer.close(5)
    return carried.count


class QuietWatch:
    """Whether the inbound topic took no record for ``quiet`` seconds: its end offsets
    unchanged since they were first seen so."""

    def __init__(self, quiet: float = INBOUND_QUIET_SECONDS):
        self.quiet = quiet
        self._ends: dict[int, int] | None = None
        self._since = 0.0

    def is_quiet(self, ends: dict[int, int], now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if ends != self._ends:
            self._ends, self._since = dict(ends), now
        return now - self._since >= self.quiet


def why_restart(rss_mib: float | None, budget_mib: int, *, log_idle_for: float,
                views_at_head: Callable[[], bool]) -> str | None:
    """The reason the broker's memory calls for a planned restart, or None: over the budget,
    or over ``IDLE_FRACTION`` of it with the log idle for ``IDLE_SECONDS`` and the views at
    its head (``views_at_head`` is asked only then)."""
    if rss_mib is None or budget_mib <= 0:
        return None
    if rss_mib > budget_mib:
        return f"{rss_mib:.0f} MiB, over the budget of {budget_mib} MiB"
    if rss_mib > budget_mib * IDLE_FRACTION and log_idle_for >= IDLE_SECONDS and views_at_head():
        return (f"{rss_mib:.0f} MiB, over {IDLE_FRACTION:.0%} of the budget of {budget_mib} MiB, "
                f"the log idle for {log_idle_for:.0f} s")
    return None


def what_holds_back(*, since_last: float | None, taking_up: bool, running: bool, inbound_quiet: bool) -> str | None:
    """What a due planned restart waits for, or None: it may go now."""
    if since_last is not None and since_last < MIN_SECONDS_BETWEEN:
        return f"{MIN_SECONDS_BETWEEN:.0f} s since the last restart"
    if taking_up:
        return "the views' saved state to be taken up"
    if not running:
        return "the worker, the relay and the view feed to run"
    if not inbound_quiet:
        return f"touchpoints.inbound to take no record for {INBOUND_QUIET_SECONDS:.0f} s"
    return None
