"""bench/broker_memory: what the bundled broker holds, and what frees it.

Rows (scale 1.0: 200,000 records of ~1 KB; platforms of 2,000 and 10,000 demo customers):

1. records: the broker's RSS (``VmRSS`` of the tansu process) empty, after 200,000
   records of ~1 KB on a 6-partition topic, after a consumer group committed all of
   them and ``streams.retention.RecordTrimmer`` ran (DeleteRecords below the
   commits), and after the topic was deleted;
2. platform: ``touchpoints up`` (``consumers.platform.Platform``) on its own bundled
   broker with the demo data set, the broker's RSS once the relay, the journey
   processor and the view feed caught up, without and with the trimmer's rounds;
   the two sizes give the broker's bytes per event and per customer; the other
   processes' RSS beside it. Once with the relay and the processors producing
   uncompressed batches (``TOUCHPOINTS_KAFKA_COMPRESSION=none``, the baseline), once
   with ``zstd`` (the default): the broker keeps batches as they were produced.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Row

BASE_RECORDS = 200_000
RECORD_BYTES = 1_000
PARTITIONS = 6
BASE_CUSTOMERS = (2_000, 10_000)
TRIM_ROUNDS = 3  # the trimmer gives up after this many refusals
CODECS = ("none", "zstd")  # TOUCHPOINTS_KAFKA_COMPRESSION: uncompressed first, the baseline


def run(scale: float) -> list[Row]:
    records = max(int(BASE_RECORDS * scale), 5_000)
    customers = tuple(max(int(c * scale), 200) for c in BASE_CUSTOMERS)
    rows = _records(records)
    slopes: dict[str, float] = {}
    for codec in CODECS:
        rows += _platform_rows(customers, codec, slopes)
    return rows


def _platform_rows(customers: tuple[int, ...], codec: str, slopes: dict[str, float]) -> list[Row]:
    """The platform at each size with the relay and processors producing with ``codec``;
    the broker's bytes per event beside those of the first codec measured (uncompressed)."""
    rows = []
    measured = [_platform(n, codec) for n in customers]
    for found in measured:
        rows.append(Row("broker_memory", f"platform ({codec}), {found['customers']:,} customers "
                        f"({found['events']:,} events): broker RSS caught up", found["caught_up"], "MiB"))
        rows.append(Row("broker_memory", f"  the same after {TRIM_ROUNDS} trimmer rounds "
                        f"(deletes records: {found['deletes_records']})", found["trimmed"], "MiB",
                        baseline="without trimming", baseline_value=found["caught_up"]))
        for process, rss in found["others"].items():
            rows.append(Row("broker_memory", f"  {process} RSS", rss, "MiB"))
    (small, large) = measured[0], measured[-1]
    if large["events"] > small["events"]:
        per_event = (large["caught_up"] - small["caught_up"]) * 2**20 / (large["events"] - small["events"])
        per_customer = per_event * large["events"] / large["customers"]
        first = next(iter(slopes.items()), None)
        slopes[codec] = per_event
        rows.append(Row("broker_memory", f"platform ({codec}): broker bytes per event (slope)", per_event, "B/event",
                        *((f"{first[0]}", first[1]) if first else ())))
        rows.append(Row("broker_memory", f"platform ({codec}): broker bytes per customer (slope)", per_customer,
                        "B/customer"))
    return rows


def _records(count: int) -> list[Row]:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.structs import OffsetAndMetadata

    from streams.broker import BundledBroker
    from streams.retention import RecordTrimmer

    topic, group = "bench.records", "bench-readers"
    with tempfile.TemporaryDirectory(prefix="bench-broker-memory-") as tmp, BundledBroker(data_dir=tmp) as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
            empty = _rss_mib(broker.pid)
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5,
                                     batch_size=1 << 20, max_request_size=8 << 20)
            value = b"x" * RECORD_BYTES
            sent = [producer.send(topic, value, key=b"customer-%d" % (n % 50_000)) for n in range(count)]
            producer.flush()
            producer.close()
            ends: dict[int, int] = {}
            for future in sent:
                written = future.get()
                ends[written.partition] = max(ends.get(written.partition, 0), written.offset + 1)
            full = _settled_rss_mib(broker.pid)
            reader = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
            reader.commit({TopicPartition(topic, p): OffsetAndMetadata(end, "", -1) for p, end in ends.items()})
            reader.close()
            trimmer = RecordTrimmer(broker.bootstrap, {topic: [group]}, request_timeout=5)
            for _ in range(TRIM_ROUNDS):
                trimmer.run_once()
            trimmer.close()
            trimmed = _settled_rss_mib(broker.pid)
            admin.delete_topics([topic])
            deleted = _settled_rss_mib(broker.pid)
        finally:
            admin.close()
    deletes = trimmer.stats()["deletes_records"]
    return [
        Row("broker_memory", "records: broker RSS empty", empty, "MiB"),
        Row("broker_memory", f"records: broker RSS after {count:,} x {RECORD_BYTES:,} B", full, "MiB",
            baseline="empty", baseline_value=empty),
        Row("broker_memory", f"records: after a group committed all and the trimmer ran (deletes records: "
            f"{deletes})", trimmed, "MiB", baseline="before trimming", baseline_value=full),
        Row("broker_memory", "records: after deleting the topic", deleted, "MiB",
            baseline="before deleting", baseline_value=full),
    ]


def _platform(customers: int, codec: str) -> dict[str, Any]:
    from application.settings import Settings
    from consumers.platform import Platform
    from streams.app import APP_ID
    from streams.processors import PROCESSOR_GROUP
    from streams.retention import RecordTrimmer
    from streams.topics import EVENTS_TOPIC, INBOUND_TOPIC

    with tempfile.TemporaryDirectory(prefix="bench-broker-memory-") as tmp:
        data = Path(tmp)
        settings = Settings(data=data, host="127.0.0.1", port=0, demo=True, demo_customers=customers,
                            store_url=f"sqlite:///{data / 'events.db'}", kafka="", kafka_compression=codec,
                            partitions=PARTITIONS, log_level="WARNING")
        platform = Platform(settings).start()
        try:
            events = platform.demo_loaded
            _wait_caught_up(platform, events)
            caught_up = _settled_rss_mib(platform.broker.pid)
            others = {"API and views (this process)": _rss_mib(os.getpid()), "relay": _rss_mib(platform.relay.pid),
                      "worker": _rss_mib(platform.worker.pid)}
            readers = {EVENTS_TOPIC: [PROCESSOR_GROUP], INBOUND_TOPIC: [APP_ID]}
            trimmer = RecordTrimmer(platform.bootstrap, readers, request_timeout=5)
            for _ in range(TRIM_ROUNDS):
                trimmer.run_once()
            trimmer.close()
            trimmed = _settled_rss_mib(platform.broker.pid)
        finally:
            platform.stop()
    return {"customers": customers, "events": events, "caught_up": caught_up, "trimmed": trimmed, "others": others,
            "deletes_records": trimmer.stats()["deletes_records"]}


def _wait_caught_up(platform: Any, events: int, timeout: float = 300.0) -> None:
    """Until the relay published every event, the processor folded them all and the view
    feed read every journey."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        relay = platform.relay_health()
        processor = platform.worker_health().get("processor") or {}
        feed = platform.feed.stats()
        if (relay.get("caught_up") and processor.get("events", 0) >= events and processor.get("lag") == 0
                and feed.get("caught_up")):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the platform did not catch up with {events:,} events within {timeout:.0f} s: "
                       f"relay {relay}, processor {processor}, view feed {feed}")


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _settled_rss_mib(pid: int, seconds: float = 2.0) -> float:
    time.sleep(seconds)
    return _rss_mib(pid)
