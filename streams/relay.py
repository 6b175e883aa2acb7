"""The relay: the event log, in global order, published to ``touchpoints.events``.

It reads the store from its checkpoint (``read_all`` pages, then polling for
new appends: a catch-up subscription with natural batching), publishes each
page (acks=all) and only then saves the checkpoint. So the checkpoint never
runs ahead of what the broker acknowledged; after a crash the relay resumes
from it and re-sends at most one page, duplicates the processors ignore (they
remember applied event ids).

It publishes with aiokafka's producer on one asyncio loop in the relay's thread:
each page becomes one record batch per partition, built by aiokafka's C batch
builder (``create_batch``/``send_batch``); kafka-python's producer encoded each
record in Python and cost ~45 µs of CPU an event. Records are one event each,
as ``streams.topics.raw_event_records`` makes them from the stored rows
(``events.raw.read_raw``: no envelope is decoded on the way), and the key picks
the partition as Kafka's default partitioner would (``partition_for_key``).
kafka-python stays for the admin requests. The topic is created with
``ensure_topics`` before the producer starts; aiokafka's metadata requests
always allow auto-creation (there is no setting), so a broker that lost the
topic may recreate it with its own default layout when a client next asks: the
data-loss check below recreates it before republishing, and the journey
processor follows the topic id.

A broker that lost data (the memory-only bundled broker restarted, the topic
deleted or recreated) is detected by comparing the topic with what the
checkpoint remembers (topic id, per-partition offsets); the relay then
republishes the whole log from position 0 into the topic created anew, logs
why and counts it in ``stats()``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from events.raw import read_raw
from events.store import EventStore
from streams.checkpoint import Checkpoint, CheckpointStore
from streams.topics import (
    DEFAULT_COMPRESSION,
    DEFAULT_PARTITIONS,
    EVENTS_TOPIC,
    TopicSpec,
    compression_type,
    close_admin,
    describe_topics,
    end_offsets,
    ensure_topics,
    RECORD_COLUMNS,
    partition_for_key,
    raw_event_records,
    recreate_topic,
)

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 1 << 20  # one record batch per partition and page, up to this size
KEY_CACHE_SIZE = 200_000  # identity streams whose partition is remembered


class RelayError(RuntimeError):
    """A page could not be published; it is retried from the checkpoint."""


class Relay:
    """Publishes the log to ``topic``; ``run()`` blocks until ``stop()``, ``start()``
    runs it in a daemon thread. ``stats()`` is safe to call from any thread.
    ``compression`` is a ``TOUCHPOINTS_KAFKA_COMPRESSION`` codec (``streams.topics``);
    ``producer_config`` adds or overrides ``AIOKafkaProducer`` settings."""

    def __init__(
        self,
        store: EventStore,
        bootstrap: str | Sequence[str],
        checkpoint_store: CheckpointStore,
        *,
        topic: str = EVENTS_TOPIC,
        partitions: int = DEFAULT_PARTITIONS,
        batch_size: int = 2000,
        poll_interval: float = 0.05,
        check_interval: float = 2.0,
        max_backoff: float = 5.0,
        connect_timeout: float = 10.0,
        producer_config: Mapping[str, Any] | None = None,
        compression: str = DEFAULT_COMPRESSION,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.store = store
        self.bootstrap = bootstrap
        self.checkpoints = checkpoint_store
        self.topic = topic
        self.partitions = partitions
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.check_interval = check_interval
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.producer_config = {"compression_type": compression_type(compression), **(producer_config or {})}
        self._checkpoint = Checkpoint()
        self._producer = None
        self._admin = None
        self._partition_count = partitions
        self._partition_cache: dict[bytes, int] = {}  # key -> partition in a topic of _partition_count
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = threading.Condition()
        self._stats: dict[str, Any] = {
            "running": False, "topic": topic, "checkpoint": None, "head": None, "lag": None,
            "sent": 0, "batches": 0, "republishes": 0, "last_republish_reason": None,
            "last_error": None, "last_error_at": None, "last_published_at": None,
        }

    # --- lifecycle -------------------------------------------------------------------

    def run(self) -> None:
        """Publish until ``stop()``. Broker and store errors are logged, shown in
        ``stats()['last_error']`` and retried with exponential backoff."""
        self._stopping.clear()
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._checkpoint = self.checkpoints.load(self.topic)
        self._update(running=True, checkpoint=self._checkpoint.position)
        log.info("relay to %s starting after position %s", self.topic, self._checkpoint.position)
        backoff = 0.1
        next_check = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    if self._admin is None:
                        await self._connect()
                        next_check = time.monotonic() + self.check_interval
                    elif time.monotonic() >= next_check:
                        await self._check_for_data_loss()
                        self._note_head()
                        next_check = time.monotonic() + self.check_interval
                    if self._producer is None:
                        self._producer = await self._new_producer()
                        self._update(last_error=None)
                    rows, stream_names = self._read_batch()
                    if rows:
                        await self._publish(rows, stream_names)
                    else:
                        self._note_head()
                        await self._pause(self.poll_interval)
                    backoff = 0.1
                except Exception as error:  # noqa: BLE001 - a relay keeps trying; the error is shown
                    log.warning("relay: %s: %s (retrying in %.1f s)", type(error).__name__, error, backoff,
                                exc_info=log.isEnabledFor(logging.DEBUG))
                    self._update(last_error=f"{type(error).__name__}: {error}", last_error_at=time.time())
                    await self._disconnect()
                    await self._pause(backoff * random.uniform(0.5, 1.0))
                    backoff = min(backoff * 2, self.max_backoff)
        finally:
            await self._disconnect()
            self._update(running=False)
            log.info("relay to %s stopped at position %s", self.topic, self._checkpoint.position)

    async def _pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking within 50 ms of ``stop()`` (called from any thread)."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    def start(self) -> "Relay":
        """Run in a daemon thread."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self.run, name="touchpoints-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to stop after the page in flight and wait for the thread."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wait_for(self, position: int, timeout: float) -> bool:
        """Wait until the checkpoint reaches ``position``; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._progress:
            while True:
                current = self._checkpoint.position
                if current is not None and current >= position:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.5))

    def stats(self) -> dict[str, Any]:
        """checkpoint: last position the broker acknowledged; head: newest position in
        the store when last looked; lag: head minus checkpoint in position units (0 when
        caught up; positions are not dense, so it is at least the number of events behind)."""
        with self._progress:
            stats = dict(self._stats)
        stats["bootstrap"] = self.bootstrap if isinstance(self.bootstrap, str) else ",".join(self.bootstrap)
        head, checkpoint = stats["head"], stats["checkpoint"]
        if head is None:
            stats["lag"] = 0
        else:
            stats["lag"] = head - checkpoint if checkpoint is not None else head + 1
        return stats

    # --- one page ----------------------------------------------------------------------

    def _read_batch(self) -> tuple[list[tuple], Mapping[int, str]]:
        """The next page after the checkpoint as stored rows (no envelope per event) and
        their stream names."""
        after = self._checkpoint.position
        pages = read_raw(self.store, 0 if after is None else after + 1, page_size=self.batch_size,
                         columns=RECORD_COLUMNS)
        try:
            return next(pages, ([], {}))
        finally:
            pages.close()

    async def _publish(self, rows: list[tuple], stream_names: Mapping[int, str]) -> None:
        producer = self._producer
        topic = self.topic
        partition_of = self._partition_of
        open_batches: dict[int, Any] = {}
        ready: list[tuple[int, Any]] = []
        last_positions: dict[int, int] = {}  # partition -> position of the page's last record on it
        for row, (key, value, headers) in zip(rows, raw_event_records(rows, stream_names)):
            partition = partition_of(key)
            last_positions[partition] = row[0]
            builder = open_batches.get(partition)
            if builder is None:
                builder = open_batches[partition] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:  # full
                ready.append((partition, builder))
                builder = open_batches[partition] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None, headers=headers)  # a first record always fits
        ready.extend(open_batches.items())
        futures = [(partition, await producer.send_batch(builder, topic, partition=partition))
                   for partition, builder in ready]
        try:
            written = await asyncio.wait_for(asyncio.gather(*(future for _, future in futures)),
                                             self._ack_timeout())
        except asyncio.TimeoutError:
            raise RelayError(f"the broker did not acknowledge a page within {self._ack_timeout():.0f} s") from None
        except Exception as error:
            raise RelayError(f"the broker did not acknowledge a record: {error!r}") from error
        first_offsets: dict[int, int] = {}
        for (partition, _), metadata in zip(futures, written):
            known = first_offsets.get(partition)
            if known is None or metadata.offset < known:
                first_offsets[partition] = metadata.offset
        checkpoint = Checkpoint(
            position=rows[-1][0],
            offsets={**self._checkpoint.offsets, **first_offsets},
            topic_id=self._checkpoint.topic_id,
            positions={**self._checkpoint.positions, **last_positions},
        )
        self.checkpoints.save(self.topic, checkpoint)
        with self._progress:
            self._checkpoint = checkpoint
            self._stats["checkpoint"] = checkpoint.position
            self._stats["sent"] += len(rows)
            self._stats["batches"] += 1
            self._stats["last_published_at"] = time.time()
            if self._stats["head"] is None or self._stats["head"] < checkpoint.position:
                self._stats["head"] = checkpoint.position
            self._progress.notify_all()

    def _partition_of(self, key: bytes) -> int:
        """The partition Kafka's default partitioner picks for ``key`` in the topic as
        described at connect time (murmur2 in Python costs a few µs: remembered per key)."""
        partitions = self._partition_cache
        found = partitions.get(key)
        if found is None:
            if len(partitions) >= KEY_CACHE_SIZE:
                partitions.clear()
            found = partitions[key] = partition_for_key(key, self._partition_count)
        return found

    def _ack_timeout(self) -> float:
        return self.producer_config.get("request_timeout_ms", 15_000) / 1000 + 5

    # --- broker connection and data-loss detection ---------------------------------------

    async def _connect(self) -> None:
        """Open the admin client, create or adopt the topic, then check it for data loss.
        The admin requests block the loop: nothing is in flight between pages."""
        from kafka import KafkaAdminClient

        self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000,
                                       bootstrap_timeout_ms=int(self.connect_timeout * 1000),
                                       client_id="touchpoints-relay-admin")
        self._ensure_topic()
        await self._check_for_data_loss()

    async def _new_producer(self):
        from aiokafka import AIOKafkaProducer

        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": "touchpoints-relay",
            # no idempotence: aiokafka asks for a producer id with InitProducerId v0, which
            # tansu 0.6 refuses. A retried batch may then be written twice (consumers ignore
            # events they applied) but order holds: aiokafka keeps one batch in flight a partition.
            "acks": "all",
            "max_batch_size": MAX_BATCH_BYTES,
            "max_request_size": 8 * MAX_BATCH_BYTES,
            "request_timeout_ms": 15_000,
        }
        config.update(self.producer_config)
        producer = AIOKafkaProducer(**config)
        try:
            await asyncio.wait_for(producer.start(), self.connect_timeout + 5)
        except BaseException:
            await self._close_producer(producer)
            raise
        return producer

    async def _close_producer(self, producer) -> None:
        """Stop a producer and wait until it has: its pending batches are delivered or
        expire (``request_timeout_ms``). A producer whose metadata predates a broker
        restart keeps writing into the topic the broker lost (see ``_ensure_topic``), so
        it must be gone before the topic is created again."""
        try:
            await asyncio.wait_for(producer.stop(), self._ack_timeout())
        except Exception:  # noqa: BLE001 - closing a broken producer may fail; nothing to save
            log.warning("relay: the producer did not close cleanly", exc_info=log.isEnabledFor(logging.DEBUG))

    async def _disconnect(self) -> None:
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        if producer is not None:
            await self._close_producer(producer)
        close_admin(admin, "relay")

    def _ensure_topic(self, *, fresh: bool = False, lost: bool = False) -> None:
        """Create the topic if missing and remember its id and partition count. On a fresh
        start (nothing published by us), a topic with the wrong partition count and no
        data is recreated: brokers that auto-create topics on a metadata request (tansu
        does, with four partitions) may have made it with their default count.

        After a data loss (``lost``: the log is republished next) the topic is always
        deleted and created again, so the republish starts in an empty topic. The bundled
        tansu 0.6 needs it: after a restart it accepts and acknowledges produce requests
        for a topic it no longer has (a producer whose metadata predates the restart
        sends them), keeps those records, and serves them in the topic created later
        under the same name, where they collide with new writes (the broker refuses a
        batch at an offset it already holds and leaves offsets no fetch can pass)."""
        ensure_topics(self.bootstrap, specs=[TopicSpec(self.topic, self.partitions)], timeout=self.connect_timeout)
        topic_id, partitions = describe_topics(self._admin, [self.topic])[self.topic]
        wrong_layout = len(partitions) != self.partitions and (fresh or self._checkpoint.position is None)
        if lost:
            log.warning("relay: recreating %s before republishing: the broker may keep records written to it "
                        "while it had lost it", self.topic)
            topic_id, partitions = self._recreate_topic()
        elif wrong_layout and self._topic_is_empty(partitions):
            log.warning("relay: %s has %d partitions, %d wanted: recreating it (it is empty)",
                        self.topic, len(partitions), self.partitions)
            topic_id, partitions = self._recreate_topic()
        elif wrong_layout:
            log.warning("relay: %s has %d partitions, %d configured: keeping the existing layout",
                        self.topic, len(partitions), self.partitions)
        if self._checkpoint.topic_id is None and topic_id is not None:
            self._checkpoint = Checkpoint(self._checkpoint.position, self._checkpoint.offsets, topic_id,
                                          self._checkpoint.positions)
        if len(partitions) != self._partition_count:
            self._partition_count, self._partition_cache = len(partitions), {}
        self._update(partitions=len(partitions))

    def _recreate_topic(self) -> tuple[str | None, list[int]]:
        return recreate_topic(self._admin, self.bootstrap, TopicSpec(self.topic, self.partitions),
                              timeout=self.connect_timeout)

    async def _check_for_data_loss(self) -> None:
        reason = self._data_loss_reason()
        if reason is None:
            return
        if self._checkpoint.position is None and not self._checkpoint.offsets:
            self._checkpoint = Checkpoint()  # nothing was published yet: nothing to republish
            self._ensure_topic(fresh=True)
        else:
            await self._republish(reason)

    def _data_loss_reason(self) -> str | None:
        checkpoint = self._checkpoint
        found = describe_topics(self._admin, [self.topic])
        if self.topic not in found:
            return f"topic {self.topic} is missing"
        topic_id, partitions = found[self.topic]
        if checkpoint.topic_id and topic_id and checkpoint.topic_id != topic_id:
            return f"topic {self.topic} was recreated (id {checkpoint.topic_id} is now {topic_id})"
        if not checkpoint.offsets:
            return None
        missing = sorted(set(checkpoint.offsets) - set(partitions))
        if missing:
            return f"partitions {missing} of {self.topic} are gone"
        ends = self._end_offsets(sorted(checkpoint.offsets))
        # a lost partition's end offset falls to or below the first offset of the
        # relay's latest acknowledged round (tansu reports the last batch's base offset
        # + 1 as the end, so comparing with the last acked offset would misfire)
        below = {p: (ends[p], o) for p, o in checkpoint.offsets.items() if ends[p] <= o}
        if below:
            shown = ", ".join(f"partition {p}: end {end} <= acknowledged {o}" for p, (end, o) in sorted(below.items()))
            return f"{self.topic} holds less than was acknowledged ({shown})"
        return None

    def _end_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        return end_offsets(self._admin, self.topic, partitions)

    def _topic_is_empty(self, partitions: Sequence[int]) -> bool:
        return all(end <= 0 for end in self._end_offsets(partitions).values())

    async def _republish(self, reason: str) -> None:
        log.warning("relay: broker lost data: %s; republishing the log from position 0", reason)
        producer, self._producer = self._producer, None
        if producer is not None:  # a new producer asks for the new topic's metadata
            await self._close_producer(producer)
        self._checkpoint = Checkpoint()
        self._ensure_topic(fresh=True, lost=True)
        # saved before republishing: a crash now resumes from 0, never from the lost checkpoint
        self.checkpoints.save(self.topic, self._checkpoint)
        with self._progress:
            self._stats["republishes"] += 1
            self._stats["last_republish_reason"] = reason
            self._stats["checkpoint"] = None

    def _note_head(self) -> None:
        self._update(head=self.store.head_position())

    def _update(self, **values: Any) -> None:
        with self._progress:
            self._stats.update(values)
