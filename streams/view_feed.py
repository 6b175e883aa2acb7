"""The view feed: ``touchpoints.journeys`` into the API process's live views.

A consumer of ALL partitions of the journeys topic, without a consumer group: the
view server needs every identity's journey (identity links cross partitions), so it
reads everything from the beginning at start and then follows the topic, handing
each batch to ``LiveViews.apply_journeys`` (the latest journey of a key replaces
the previous one; a ``None`` value, a tombstone, removes it).

Broker restarts (the memory-only bundled broker loses everything): while the
broker is away the feed keeps retrying. Its positions count records of one
incarnation of the topic, named by the topic id the broker reports: when that id
changes (the topic was recreated) every partition is read again from its beginning,
whatever its high watermark. That check runs before positions are used again after
a reconnect: by the time the feed reconnects, the processors may have republished
more journeys than the feed had read, and seeking to the old positions would skip
the journeys below them (seen in CI as live views that never converged). Where the
broker reports no ids, a partition whose high watermark falls below the feed's
position, or whose offset vanished, is read again from its beginning. The views are
not cleared meanwhile: they keep serving what they had, and the journeys the
processors publish again replace it key by key.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from projections.journey import IdentityJourney, JourneyFormatError
from streams.topics import JOURNEYS_TOPIC, TopicDescriber

log = logging.getLogger(__name__)

JourneyItems = list[tuple[str, IdentityJourney | None]]


def decode_journeys(records: Iterable[Any]) -> tuple[JourneyItems, int]:
    """``(key, journey | None)`` per key (the last record of a key in the batch wins:
    each record holds the whole journey), and how many records were unreadable."""
    latest: dict[str, bytes | None] = {}
    bad = 0
    for record in records:
        if record.key is None:
            bad += 1
            continue
        key = record.key.decode()
        latest.pop(key, None)  # keep arrival order of the last record per key
        latest[key] = record.value
    items: JourneyItems = []
    unreadable: list[tuple[str, JourneyFormatError]] = []
    for key, value in latest.items():
        if value is None:
            items.append((key, None))
            continue
        try:
            items.append((key, IdentityJourney.from_bytes(value)))
        except JourneyFormatError as error:
            unreadable.append((key, error))
    if unreadable:  # one line a batch: after a format change every old journey is unreadable
        log.warning("view feed: %d journeys unreadable (e.g. %s: %s): skipped; the journey processor rebuilds "
                    "journeys of another format", len(unreadable), *unreadable[0])
    return items, bad + len(unreadable)


def _last_whole_fold(records: Sequence[Any]) -> int | None:
    """The log position the last batch-end journey among ``records`` names (the journey
    processor marks the last journey of each batch it publishes; ``streams.processors``),
    None if none is marked. Read from the end: usually the last record is one."""
    from streams.processors import H_BATCH_END, last_folded_event

    for record in reversed(records):
        headers = record.headers
        if headers and headers[-1][0] == H_BATCH_END:  # the mark is the last header: no dict a record
            named = last_folded_event(headers)
            return named[0] if named is not None else None
    return None


class ViewFeed:
    """Follows the journeys topic into ``views`` (anything with ``apply_journeys``) in a
    thread. ``listeners`` are called with each applied batch (benchmarks time it)."""

    def __init__(
        self,
        bootstrap: str,
        views: Any,
        *,
        topic: str = JOURNEYS_TOPIC,
        poll_timeout_ms: int = 100,
        max_records: int = 10_000,
        check_interval: float = 0.5,
        listeners: Sequence[Callable[[JourneyItems], None]] = (),
        resume: dict[str, Any] | None = None,
    ):
        """``resume``: a ``checkpoint()`` of a previous feed whose journeys ``views`` holds
        (a views state taken up): followed from there if the topic is still the one it
        counted records of, else read again from the beginning, newer journeys only."""
        self.bootstrap = bootstrap
        self.views = views
        self.topic = topic
        self.poll_timeout_ms = poll_timeout_ms
        self.max_records = max_records
        self.check_interval = check_interval
        self.listeners = list(listeners)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._positions: dict[int, int] = {}
        self._highwater: dict[int, int] = {}
        # partition -> the log position of the last event folded by the last whole processor batch applied
        self._folded: dict[int, int] = {}
        self._topic_id: str | None = None  # the incarnation ``_positions`` count records of
        self._describer = TopicDescriber(bootstrap, topic, "touchpoints-view-feed-admin")
        self._counts = {
            "records": 0, "applied": 0, "unreadable": 0, "resets": 0, "topic_recreations": 0, "errors": 0,
        }
        self._last_error: str | None = None
        self._last_applied_at: float | None = None
        self._connected = False
        self._resuming = False
        if resume is not None:
            self.resume_from(resume)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> "ViewFeed":
        """Follow the topic from where this feed stopped (a new feed: from the beginning)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="view-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def resume_from(self, checkpoint: dict[str, Any]) -> None:
        """Before ``start``: follow on from ``checkpoint`` (see ``resume`` in the constructor)."""
        self._resuming = True
        self._topic_id = checkpoint.get("topic_id")
        self._positions = {int(p): int(offset) for p, offset in (checkpoint.get("positions") or {}).items()}
        self._folded = {int(p): int(position) for p, position in (checkpoint.get("folded") or {}).items()}

    def checkpoint(self) -> dict[str, Any]:
        """Where this feed is (call it once stopped): the topic's id and the next offset of
        each partition, for a later feed's ``resume``."""
        return {"kind": "kafka", "topic": self.topic, "topic_id": self._topic_id,
                "positions": {str(p): offset for p, offset in sorted(self._positions.items())},
                "folded": {str(p): position for p, position in sorted(self._folded.items())}}

    def __enter__(self) -> "ViewFeed":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- health ---------------------------------------------------------------------------

    def lag(self) -> int | None:
        """Journey records published but not applied yet (None until the first fetch). A lag
        of 0 after a batch was applied is the broker's answer after it (``_confirm_end``)."""
        if not self._highwater:
            return None
        return sum(max(high - self._positions.get(p, 0), 0) for p, high in self._highwater.items())

    def folded_positions(self) -> dict[int, int]:
        """Per partition, the log position of the last event the journey processor had folded
        when it published the last batch of journeys applied whole (its last journey carries
        the mark): every event of that events partition up to it is in the views. A partition
        whose journeys carry no mark (an earlier processor) is absent."""
        return dict(self._folded)

    def applied_offsets(self) -> dict[int, int]:
        """Per journeys partition, the offset after the last record applied to the views
        (positions move only once a batch is applied)."""
        return dict(self._positions)

    def stats(self) -> dict[str, Any]:
        lag = self.lag()
        running = self._thread is not None and self._thread.is_alive()
        return {
            "status": "ok" if running and self._connected else "degraded",
            "topic": self.topic,
            "partitions": len(self._positions),
            "lag": lag,
            "caught_up": lag == 0,
            "last_applied_at": self._last_applied_at,
            "last_error": self._last_error,
            **self._counts,
        }

    def wait_caught_up(self, timeout: float) -> bool:
        """Block until every partition was read to its high watermark."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._connected and self.lag() == 0:
                return True
            time.sleep(0.02)
        return False

    # --- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        # aiokafka parses fetched records in C: 3.5-3.7 µs of CPU a journey record here,
        # where kafka-python's consumer took 9.2-9.3 (measured alternately on the bundled
        # broker); this thread runs in the API process, beside ingestion and the views
        asyncio.run(self._run_async())

    async def _run_async(self) -> None:
        try:
            await self._follow_with_retries()
        finally:
            self._describer.close()

    async def _follow_with_retries(self) -> None:
        from aiokafka.errors import KafkaError

        backoff = 0.2
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = await self._connect()
                backoff = 0.2
                await self._follow(consumer)
            except (KafkaError, OSError, ValueError, asyncio.TimeoutError) as error:
                self._counts["errors"] += 1
                self._last_error = f"{type(error).__name__}: {error}"
                log.warning("view feed: %s; reconnecting in %.1f s", self._last_error, backoff)
                await asyncio.to_thread(self._stop.wait, backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._connected = False
                if consumer is not None:
                    try:
                        await consumer.stop()
                    except Exception as error:  # the broker may be gone: nothing to flush
                        log.debug("view feed: close: %r", error)
                    except asyncio.CancelledError:
                        # aiokafka's fetcher, closed while it waits to retry a fetch from a broker
                        # that is down, lets the cancel of that wait out: it must not end the feed
                        if asyncio.current_task().cancelling():
                            raise
                        log.debug("view feed: close: a fetch retry was cancelled")

    async def _connect(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=20, request_timeout_ms=10_000,
            metadata_max_age_ms=2000, client_id="touchpoints-view-feed", max_partition_fetch_bytes=8 << 20,
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _follow(self, consumer: Any) -> None:
        assigned: list[Any] = []
        last_check = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_check >= self.check_interval or not assigned:
                last_check = now
                assigned = await self._assign(consumer, assigned)
                if not assigned:
                    await asyncio.to_thread(self._stop.wait, self.check_interval)
                    continue
            fetched = await consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
            self._connected = True
            batch = []
            for records in fetched.values():
                batch.extend(records)
            for tp in assigned:
                high = consumer.highwater(tp)
                if high is not None:  # never back: a confirmed end may be newer than the last fetch
                    self._highwater[tp.partition] = max(high, self._highwater.get(tp.partition, 0))
            items = self._apply(batch) if batch else []
            # the positions move once the batch is in the views: while it is being applied (seconds
            # at a million customers) the lag counts it, so no health check calls the views caught up
            for tp, records in fetched.items():
                self._positions[tp.partition] = records[-1].offset + 1
                folded = _last_whole_fold(records)
                if folded is not None:
                    self._folded[tp.partition] = folded
            if batch:
                if self.lag() == 0:
                    await self._confirm_end(consumer, assigned)
                self._notify(items)

    async def _confirm_end(self, consumer: Any, assigned: list[Any]) -> None:
        """Ask the broker for each partition's end before a lag of 0 is believed: the high
        watermarks came with the fetch, and applying its batch takes a while (seconds at a
        million customers), during which the processors may publish more. Without it the
        health check could call the views caught up while journeys reflecting positions below
        theirs were still unread."""
        for tp, end in (await consumer.end_offsets(assigned)).items():
            self._highwater[tp.partition] = max(end, self._highwater.get(tp.partition, 0))

    async def _assign(self, consumer: Any, assigned: list[Any]) -> list[Any]:
        """(Re)assign every partition of the topic; rewind those that lost data."""
        from aiokafka import TopicPartition

        await consumer.topics()  # fresh metadata: the topic may have been (re)created meanwhile
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            return []
        wanted = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        if await self._topic_was_recreated():
            self._positions = {}  # every partition is new: read each from its beginning
            self._highwater = {}
            self._folded = {}
            assigned = []
        if wanted != assigned:
            consumer.assign(wanted)
            new = [tp for tp in wanted if tp.partition not in self._positions]
            for tp in wanted:
                if tp.partition in self._positions:
                    consumer.seek(tp, self._positions[tp.partition])
            if new:
                await consumer.seek_to_beginning(*new)
            return wanted
        for tp in wanted:
            position = self._positions.get(tp.partition, 0)
            high = consumer.highwater(tp)
            if high is not None and high < position:
                log.warning("view feed: %s partition %d shrank (%d < %d): the broker lost it; re-reading",
                            self.topic, tp.partition, high, position)
                self._counts["resets"] += 1
                self._positions[tp.partition] = 0
                self._highwater[tp.partition] = high
                await consumer.seek_to_beginning(tp)
        return wanted

    def _newer_only(self) -> None:
        switch = getattr(self.views, "newer_journeys_only", None)
        if switch is not None:
            switch(True)

    async def _topic_was_recreated(self) -> bool:
        """Whether the positions held must be dropped: the topic's id differs from the one
        they count records of. False when the broker reports no id or cannot be asked (the
        shrink check still runs), except for the positions a resumed feed was given: they
        came from another process, so only the same id keeps them. Once dropped, only
        journeys newer than the views hold are applied (the processors republish as they
        fold the log again)."""
        described = await asyncio.to_thread(self._describer.describe)
        topic_id = described[0] if described else None
        previous = self._topic_id
        resuming, self._resuming = self._resuming, False
        if resuming:
            if topic_id is not None and topic_id == previous and self._positions:
                log.info("view feed: resuming %s at the positions the views were saved with", self.topic)
                return False
            what = "is not the topic the views were saved with"
        elif topic_id is None or previous is None or previous == topic_id or not self._positions:
            if topic_id is not None:
                self._topic_id = topic_id
            return False
        else:
            what = "was recreated: the broker lost it"
            self._counts["topic_recreations"] += 1
        self._topic_id = topic_id
        log.warning("view feed: %s %s (topic id %s, was %s): re-reading every partition from its beginning, newer "
                    "journeys only", self.topic, what, topic_id, previous)
        self._newer_only()
        return True

    def _apply(self, records: list[Any]) -> JourneyItems:
        self._counts["records"] += len(records)
        items, bad = decode_journeys(records)
        self._counts["unreadable"] += bad
        if items:
            self.views.apply_journeys(items)
            self._counts["applied"] += len(items)
            self._last_applied_at = time.time()
        return items

    def _notify(self, items: JourneyItems) -> None:
        """The listeners, once the lag after the batch is known."""
        if items:
            for listener in self.listeners:
                listener(items)

