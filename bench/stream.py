"""bench/stream: the live pipeline on the bundled broker.

Rows (scale 1.0: 200,000 events for throughput, 10 s per steady rate):

1. raw aiokafka consume of the ``touchpoints.events`` records (baseline: the floor);
2. a minimal per-event Faust agent that only decodes (through ``events.registry``)
   and counts them (baseline: what a naive Faust processor manages);
3. the journey processor, one worker (``touchpoints worker``): the same records,
   from published to visible in the live views (the view feed applied the journeys);
   target >= 3x the per-event Faust agent;
4. end to end: events appended to the SQLite store in bulk, through the relay and
   the worker, until visible in the views (events/s);
5. freshness p50/p99, append (committed) to visible in the views, at steady 1,000
   and 5,000 events/s; targets p99 < 1 s and < 2 s.

"Visible" means applied to ``LiveViews`` (the population the API serves): the
next request reflects it. The relay and the worker run as child processes, as in
``touchpoints up``; the broker is a fresh bundled one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from bench.common import Row

BASE_EVENTS = 200_000
BASE_SECONDS = 10.0
PARTITIONS = 6


def run(scale: float) -> list[Row]:
    events = max(int(BASE_EVENTS * scale), 5_000)
    seconds = max(BASE_SECONDS * scale, 3.0)
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        root = Path(tmp)
        with _broker(root / "broker-a") as bootstrap:
            published = _publish_bulk(bootstrap, events)
            raw = asyncio.run(_raw_consume(bootstrap, published))
            faust = _faust_baseline(bootstrap, published, root)
            faust_rate = faust["rate"]
            with _Pipeline(_settings(root / "a", bootstrap), _NullViews()) as pipeline:
                processor = pipeline.throughput(published)
        with _broker(root / "broker-b") as bootstrap:
            with _Pipeline(_settings(root / "b", bootstrap), None) as pipeline:
                pipeline.start_relay()
                demo = pipeline.load(_demo_events(DEMO_EVENTS, seed=5))
                freshness = {rate: pipeline.freshness(rate, seconds, seed=100 + rate) for rate in (1000, 5000)}
                end_to_end = pipeline.end_to_end(max(events // 4, 5_000), seed=77)
    rows = [
        Row("stream", "raw aiokafka consume", raw, "events/s"),
        Row("stream", "per-event Faust agent: decode + count", faust_rate, "events/s",
            baseline="raw aiokafka", baseline_value=raw),
        Row("stream", "processor, 1 worker: events folded, journeys published", processor["rate"], "events/s",
            baseline="per-event Faust agent", baseline_value=faust_rate, target=">= 3x",
            ok=processor["rate"] >= 3 * faust_rate),
        Row("stream", "per-event Faust agent CPU per event", faust["cpu_us"], "us/event"),
        Row("stream", "processor worker CPU per event", processor["cpu_us"], "us/event",
            baseline="per-event Faust agent", baseline_value=faust["cpu_us"], target="<= 0.33x",
            ok=processor["cpu_us"] <= faust["cpu_us"] / 3),
        Row("stream", f"end to end: bulk append -> views ({demo:,}+ events live)", end_to_end, "events/s",
            baseline="per-event Faust agent", baseline_value=faust_rate),
    ]
    for rate, (p50, p99, count) in freshness.items():
        limit = 1000 if rate == 1000 else 2000
        rows.append(Row("stream", f"freshness p50 at {rate:,} ev/s ({count:,} events)", p50, "ms"))
        rows.append(Row("stream", f"freshness p99 at {rate:,} ev/s", p99, "ms", target=f"< {limit} ms",
                        ok=p99 < limit))
    return rows


DEMO_EVENTS = 20_000  # about what `touchpoints up` loads (TOUCHPOINTS_DEMO_CUSTOMERS=2000)


class _broker:
    """A fresh bundled broker with the platform's topics; yields its bootstrap."""

    def __init__(self, directory: Path):
        from streams.broker import BundledBroker

        self.broker = BundledBroker(data_dir=directory)

    def __enter__(self) -> str:
        from streams.topics import ensure_topics

        self.broker.start()
        ensure_topics(self.broker.bootstrap, PARTITIONS)
        return self.broker.bootstrap

    def __exit__(self, *exc: object) -> None:
        self.broker.close()


def _settings(data: Path, bootstrap: str) -> Any:
    from application.settings import Settings

    return Settings(data=data, store_url=f"sqlite:///{data / 'events.db'}", kafka=bootstrap,
                    partitions=PARTITIONS, demo=False, log_level="WARNING")


class _NullViews:
    """A view sink that applies nothing: isolates the worker's throughput from the
    view server's (the feed still decodes every journey)."""

    def apply_journeys(self, items: Any) -> int:
        return len(items)

    def close(self) -> None:
        pass


# --- the records ---------------------------------------------------------------------------


def _demo_events(count: int, seed: int) -> list[Any]:
    from application.demo import generate
    from events.registry import REGISTRY

    out = []
    customers = max(count // 8, 10)
    while len(out) < count:
        for item in generate(customers, seed=seed):
            out.append(REGISTRY.validate(item))
            if len(out) >= count:
                break
        seed += 1
    return out


def _publish_bulk(bootstrap: str, count: int) -> int:
    """Publish ``count`` records in the relay's exact format (``streams.topics.event_record``)."""
    from events.encoded import encode_events
    from events.store import RecordedEvent
    from streams.topics import EVENTS_TOPIC, event_record, partition_for_key

    now = datetime.now(timezone.utc)
    records = []
    for position, (stream, new) in enumerate(encode_events(_demo_events(count, seed=4242)).new_events(), start=1):
        recorded = RecordedEvent(position, stream, 0, new.event_id, new.type, new.schema_version,
                                 new.occurred_at, now, new.data, new.metadata)
        records.append(event_record(recorded))

    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
        await producer.start()
        try:
            futures = [await producer.send(EVENTS_TOPIC, value, key=key, headers=headers,
                                           partition=partition_for_key(key, PARTITIONS))
                       for key, value, headers in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send())
    return len(records)


# --- baselines -------------------------------------------------------------------------------


async def _raw_consume(bootstrap: str, count: int) -> float:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    from streams.topics import EVENTS_TOPIC

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20,
                                max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(EVENTS_TOPIC, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, started = 0, None
        while seen < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if started is None and batch:
                started = time.perf_counter()
            seen += sum(len(records) for records in batch.values())
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _faust_baseline(bootstrap: str, count: int, tmp: Path) -> dict[str, float]:
    result = tmp / "faust-baseline.json"
    subprocess.run([sys.executable, "-m", "bench.stream", "faust-baseline", bootstrap, str(count), str(result)],
                   check=True, timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return orjson.loads(result.read_bytes())


def _faust_baseline_worker(bootstrap: str, count: int, result: str) -> None:
    """A minimal per-event Faust agent: decode each record through the registry, count."""
    import faust

    from events.registry import REGISTRY
    from streams.topics import EVENTS_TOPIC

    app = faust.App(f"bench-baseline-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", value_serializer="raw",
                    key_serializer="raw", store="memory://", web_enabled=False, autodiscover=False,
                    datadir=str(Path(result).parent / "faust"), consumer_auto_offset_reset="earliest",
                    broker_session_timeout=6, broker_heartbeat_interval=1.5, broker_rebalance_timeout=12)
    topic = app.topic(EVENTS_TOPIC, key_serializer="raw", value_serializer="raw")
    state = {"seen": 0, "started": 0.0, "cpu": 0.0}

    @app.agent(topic)
    async def decode_and_count(stream):
        async for event in stream.events():
            headers = dict(event.message.headers)
            REGISTRY.decode_stored(headers["type"].decode(), int(headers["schema_version"]), event.value)
            state["seen"] += 1
            if state["seen"] == 1:
                state["started"], state["cpu"] = time.perf_counter(), time.process_time()
            elif state["seen"] >= count:
                rate = (count - 1) / (time.perf_counter() - state["started"])
                cpu_us = (time.process_time() - state["cpu"]) / (count - 1) * 1e6
                Path(result).write_bytes(orjson.dumps({"rate": rate, "cpu_us": cpu_us}))
                os._exit(0)

    faust.Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False).execute_from_commandline()


# --- the pipeline ------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Visibility:
    """View-feed listener: which events became visible when (from journeys' event ids)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, set[int]] = {}
        self.visible = 0
        self.first_at: float | None = None
        self.first_count = 0
        self.last_at = 0.0
        self.appended_at: dict[int, float] = {}
        self.latencies: list[float] = []

    def __call__(self, items: list) -> None:
        now = time.perf_counter()
        with self.lock:
            for key, journey in items:
                if journey is None:
                    continue
                before = self.seen.get(key, set())
                new = journey.seen - before
                if not new:
                    continue
                self.seen[key] = journey.seen
                self.visible += len(new)
                for event_id in new:
                    appended = self.appended_at.pop(event_id, None)
                    if appended is not None:
                        self.latencies.append(now - appended)
            if self.first_at is None and self.visible:
                self.first_at, self.first_count = now, self.visible
            self.last_at = now


class _Pipeline:
    def __init__(self, settings: Any, views: Any):
        self.settings = settings
        self.views = views
        self.visibility = _Visibility()

    def __enter__(self) -> "_Pipeline":
        from application.live_views import LiveViews
        from events.factory import open_store
        from consumers.platform import Platform
        from streams.view_feed import ViewFeed

        self.platform = Platform(self.settings)  # only for its child-process helper
        self.platform.bootstrap = self.settings.kafka
        self.platform.run_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_store(self.settings.store_url)
        if self.views is None:
            self.views = LiveViews()
        self.feed = ViewFeed(self.settings.kafka, self.views, listeners=[self.visibility]).start()
        self.worker = self.platform._child("worker", ["worker", "--no-inbound"])
        self.relay = None
        self.worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for child in (self.relay, self.worker):
            if child is not None:
                child.stop()
        self.feed.stop()
        self.views.close()
        self.store.close()

    def _wait_visible(self, total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.visibility.visible < total:
            for child in (self.worker, self.relay):
                if child is not None and not child.alive:
                    raise RuntimeError(f"the {child.name} exited ({child.process.returncode}); see {child.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.visibility.visible} of {total} events visible after {timeout:.0f} s")
            time.sleep(0.01)

    def throughput(self, published: int) -> dict[str, float]:
        self._wait_visible(1, 120)
        cpu_before, counted_from = _cpu_seconds(self.worker.pid), self.visibility.visible  # startup excluded
        self._wait_visible(published, 600)
        cpu = _cpu_seconds(self.worker.pid) - cpu_before
        v = self.visibility
        rate = (v.visible - v.first_count) / max(v.last_at - v.first_at, 1e-9)
        return {"rate": rate, "cpu_us": cpu / max(v.visible - counted_from, 1) * 1e6}

    def start_relay(self) -> None:
        self.relay = self.platform._child("relay", ["relay", "--stats-interval", "0"])
        self.relay.start()
        time.sleep(2.0)  # connected to the broker

    def _append(self, events: list[Any]) -> None:
        from application.ingest import Ingestor

        Ingestor(self.store).append(events)
        now = time.perf_counter()
        with self.visibility.lock:
            for event in events:
                self.visibility.appended_at[event.event_id.int] = now

    def load(self, events: list[Any]) -> int:
        """Append a starting data set and wait until the views hold it."""
        for start in range(0, len(events), 2000):
            self._append(events[start:start + 2000])
        self._wait_visible(len(events), 300)
        return len(events)

    def freshness(self, rate: int, seconds: float, *, seed: int) -> tuple[float, float, int]:
        events = _demo_events(int(rate * seconds), seed)
        tick = 0.02
        per_tick = max(int(rate * tick), 1)
        with self.visibility.lock:
            self.visibility.latencies = []
        target = self.visibility.visible + len(events)
        started = time.perf_counter()
        for n, start in enumerate(range(0, len(events), per_tick)):
            self._append(events[start:start + per_tick])
            delay = started + (n + 1) * tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        self._wait_visible(target, 120)
        latencies = sorted(self.visibility.latencies)
        return _percentile(latencies, 50) * 1000, _percentile(latencies, 99) * 1000, len(latencies)

    def end_to_end(self, count: int, *, seed: int) -> float:
        events = _demo_events(count, seed)
        target = self.visibility.visible + len(events)
        started = time.perf_counter()
        for start in range(0, len(events), 2000):
            self._append(events[start:start + 2000])
        self._wait_visible(target, 600)
        return len(events) / (self.visibility.last_at - started)


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return float("nan")
    rank = (len(values) - 1) * percent / 100
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "faust-baseline":
        _faust_baseline_worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        print("usage: python -m bench.stream faust-baseline BOOTSTRAP COUNT RESULT_FILE (run by bench/stream)",
              file=sys.stderr)
        sys.exit(2)
