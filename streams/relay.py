"""The relay: the event log, in global order, published to ``touchpoints.events``.

It reads the store from its checkpoint (``read_all`` pages, then polling for
new appends: a catch-up subscription with natural batching), publishes each
page with one producer flush (acks=all), and only then saves the checkpoint.
So the checkpoint never runs ahead of what the broker acknowledged; after a
crash the relay resumes from it and re-sends at most one page, duplicates the
processors ignore (they remember applied event ids).

A broker that lost data (the memory-only bundled broker restarted, the topic
deleted or recreated) is detected by comparing the topic with what the
checkpoint remembers (topic id, per-partition offsets); the relay then
republishes the whole log from position 0, logs why and counts it in
``stats()``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from events.store import EventStore, RecordedEvent
from streams.checkpoint import Checkpoint, CheckpointStore
from streams.topics import (
    DEFAULT_PARTITIONS,
    EVENTS_TOPIC,
    TopicSpec,
    close_admin,
    describe_topics,
    ensure_topics,
    event_record,
)

log = logging.getLogger(__name__)


class RelayError(RuntimeError):
    """A page could not be published; it is retried from the checkpoint."""


class Relay:
    """Publishes the log to ``topic``; ``run()`` blocks until ``stop()``, ``start()``
    runs it in a daemon thread. ``stats()`` is safe to call from any thread."""

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
        self.producer_config = dict(producer_config or {})
        self._checkpoint = Checkpoint()
        self._producer = None
        self._admin = None
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
        self._checkpoint = self.checkpoints.load(self.topic)
        self._update(running=True, checkpoint=self._checkpoint.position)
        log.info("relay to %s starting after position %s", self.topic, self._checkpoint.position)
        backoff = 0.1
        next_check = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    if self._admin is None:
                        self._connect()
                        next_check = time.monotonic() + self.check_interval
                    elif time.monotonic() >= next_check:
                        self._check_for_data_loss()
                        self._note_head()
                        next_check = time.monotonic() + self.check_interval
                    if self._producer is None:
                        self._producer = self._new_producer()
                        self._update(last_error=None)
                    batch = self._read_batch()
                    if batch:
                        self._publish(batch)
                    else:
                        self._note_head()
                        self._stopping.wait(self.poll_interval)
                    backoff = 0.1
                except Exception as error:  # noqa: BLE001 - a relay keeps trying; the error is shown
                    log.warning("relay: %s: %s (retrying in %.1f s)", type(error).__name__, error, backoff,
                                exc_info=log.isEnabledFor(logging.DEBUG))
                    self._update(last_error=f"{type(error).__name__}: {error}", last_error_at=time.time())
                    self._disconnect()
                    self._stopping.wait(backoff * random.uniform(0.5, 1.0))
                    backoff = min(backoff * 2, self.max_backoff)
        finally:
            self._disconnect()
            self._update(running=False)
            log.info("relay to %s stopped at position %s", self.topic, self._checkpoint.position)

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

    def _read_batch(self) -> list[RecordedEvent]:
        after = self._checkpoint.position
        start = 0 if after is None else after  # read_all is inclusive: skip the checkpoint itself
        batch: list[RecordedEvent] = []
        for recorded in self.store.read_all(start, limit=self.batch_size + 1):
            if after is None or recorded.position > after:
                batch.append(recorded)
        return batch[: self.batch_size]

    def _publish(self, batch: list[RecordedEvent]) -> None:
        send = self._producer.send
        topic = self.topic
        futures = []
        for recorded in batch:
            key, value, headers = event_record(recorded)
            futures.append(send(topic, key=key, value=value, headers=headers))
        self._producer.flush(timeout=self._flush_timeout())
        first_offsets: dict[int, int] = {}
        for future in futures:
            if not future.succeeded():
                raise RelayError(f"the broker did not acknowledge a record: {future.exception!r}")
            metadata = future.value
            known = first_offsets.get(metadata.partition)
            if known is None or metadata.offset < known:
                first_offsets[metadata.partition] = metadata.offset
        checkpoint = Checkpoint(
            position=batch[-1].position,
            offsets={**self._checkpoint.offsets, **first_offsets},
            topic_id=self._checkpoint.topic_id,
        )
        self.checkpoints.save(self.topic, checkpoint)
        with self._progress:
            self._checkpoint = checkpoint
            self._stats["checkpoint"] = checkpoint.position
            self._stats["sent"] += len(batch)
            self._stats["batches"] += 1
            self._stats["last_published_at"] = time.time()
            if self._stats["head"] is None or self._stats["head"] < checkpoint.position:
                self._stats["head"] = checkpoint.position
            self._progress.notify_all()

    def _flush_timeout(self) -> float:
        return self.producer_config.get("delivery_timeout_ms", 15_000) / 1000 + 5

    # --- broker connection and data-loss detection ---------------------------------------

    def _connect(self) -> None:
        from kafka import KafkaAdminClient

        self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000,
                                       bootstrap_timeout_ms=int(self.connect_timeout * 1000),
                                       client_id="touchpoints-relay-admin")
        self._ensure_topic()
        self._check_for_data_loss()

    def _new_producer(self):
        from kafka import KafkaProducer

        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": "touchpoints-relay",
            "acks": "all",
            "enable_idempotence": True,  # retries keep per-partition order and add no duplicates
            "linger_ms": 5,
            "batch_size": 256 * 1024,
            "request_timeout_ms": 10_000,
            "delivery_timeout_ms": 15_000,
            "max_block_ms": 15_000,
            "allow_auto_create_topics": False,
        }
        config.update(self.producer_config)
        return KafkaProducer(**config)

    def _disconnect(self) -> None:
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        if producer is not None:
            try:
                producer.close(timeout=1)
            except Exception:  # noqa: BLE001 - closing a broken producer may fail; nothing to save
                log.debug("relay: closing the producer failed", exc_info=True)
        close_admin(admin, "relay")

    def _ensure_topic(self, *, fresh: bool = False) -> None:
        """Create the topic if missing and remember its id. On a fresh start (nothing
        published by us), a topic with the wrong partition count and no data is
        recreated: brokers that auto-create topics on produce (tansu does, whatever the
        client asks) may have made it with their default count."""
        ensure_topics(self.bootstrap, specs=[TopicSpec(self.topic, self.partitions)], timeout=self.connect_timeout)
        topic_id, partitions = describe_topics(self._admin, [self.topic])[self.topic]
        if len(partitions) != self.partitions and (fresh or self._checkpoint.position is None):
            if self._topic_is_empty(partitions):
                log.warning("relay: %s has %d partitions, %d wanted: recreating it (it is empty)",
                            self.topic, len(partitions), self.partitions)
                self._admin.delete_topics([self.topic])
                self._wait_topic_gone()
                ensure_topics(self.bootstrap, specs=[TopicSpec(self.topic, self.partitions)], timeout=self.connect_timeout)
                topic_id, partitions = describe_topics(self._admin, [self.topic])[self.topic]
            else:
                log.warning("relay: %s has %d partitions, %d configured: keeping the existing layout",
                            self.topic, len(partitions), self.partitions)
        if self._checkpoint.topic_id is None and topic_id is not None:
            self._checkpoint = Checkpoint(self._checkpoint.position, self._checkpoint.offsets, topic_id)
        self._update(partitions=len(partitions))

    def _check_for_data_loss(self) -> None:
        reason = self._data_loss_reason()
        if reason is None:
            return
        if self._checkpoint.position is None and not self._checkpoint.offsets:
            self._checkpoint = Checkpoint()  # nothing was published yet: nothing to republish
            self._ensure_topic(fresh=True)
        else:
            self._republish(reason)

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
        from kafka import TopicPartition
        from kafka.admin import OffsetSpec

        answer = self._admin.list_partition_offsets({TopicPartition(self.topic, p): OffsetSpec.LATEST for p in partitions})
        return {tp.partition: found.offset for tp, found in answer.items()}

    def _topic_is_empty(self, partitions: Sequence[int]) -> bool:
        return all(end <= 0 for end in self._end_offsets(partitions).values())

    def _wait_topic_gone(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.topic in describe_topics(self._admin, [self.topic]) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _republish(self, reason: str) -> None:
        log.warning("relay: broker lost data: %s; republishing the log from position 0", reason)
        producer, self._producer = self._producer, None
        if producer is not None:  # its pending records belong to the lost topic
            producer.close(timeout=0)
        self._checkpoint = Checkpoint()
        self._ensure_topic(fresh=True)
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
