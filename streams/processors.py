"""The journey processor: folds ``touchpoints.events`` into one journey per identity
and publishes each changed journey to the co-partitioned ``touchpoints.journeys``.

Why not a Faust agent with a Faust table: measured here, Faust's per-message
machinery costs ~70 µs of CPU per event even with ``stream.take_events`` (a
per-event agent ~100 µs), and a changelogged table write per event more. The
target is 3x the per-event agent, so the processor reads batches straight from
aiokafka (``getmany``, a few µs per record) inside the Faust worker (it is a
``mode`` service the Faust app starts and stops) and keeps its state as follows:

* State (``streams.journey_state``): an in-memory dict ``identity stream -> IdentityJourney`` per assigned
  partition. The journeys topic IS its changelog: after each batch every
  touched journey is produced (one record per identity per batch) to the same
  partition number of ``touchpoints.journeys``; on assignment a partition's
  journeys are restored by reading that partition from the beginning.
* At-least-once, exactly-once effect: the events offsets are committed only
  after the batch's journeys were acknowledged. After a crash the restored
  journeys already hold everything up to the committed offset (and maybe
  more); redelivered events are ignored because a journey remembers the ids of
  the events it applied.
* Rebalances: a member restores, folds and publishes only the partitions of its
  current assignment, from a restore made after that assignment. Between the
  revocation of its partitions and its next assignment, aiokafka's consumer still
  names the previous partitions while the group may give them to other members: the
  processor then holds none (``_owned``), and on assignment it forgets every journey
  it still held, so a partition that comes back after another member folded it is
  restored with what that member published, never continued from an older state.
* Broker data loss (the memory-only bundled broker restarted): offsets that
  vanished reset to the earliest record (the relay republishes the log from
  position 0); a journeys partition whose produce offsets went backwards lost
  its records, so every journey of that partition is produced again. On either
  sign (that, or the events topic showing another id, below) the processor stops
  its producer and starts a new one, and a member holding every partition
  recreates the journeys topic before publishing again: the bundled broker keeps
  what a producer from before its restart sent meanwhile (``_renew_journeys``). At
  start, a journeys topic of another layout than the events topic, none of whose
  journeys names the events topic there now, is recreated (``_repair_journeys_layout``).
* A saved state (``state_folder``, ``streams.worker_state``): a clean stop of a member
  holding every partition copies each partition's journeys file with the last event
  folded into it (each journey record names it in the ``events_position`` header, so a
  restored partition knows it too). When ``touchpoints up`` found its broker emptied it
  hands the state over to the new events topic, into which the relay publishes only the
  events after the state's lowest position. For the life of that topic the handed-over
  files are the base of every restore: a partition starts as a copy of its base file with
  the journeys changelog (only the changes since) over it, and folds the events after its
  position (those folded already are duplicates); nothing is published again. Any state
  not handed over is discarded at start.
* A recreated events topic (another topic id: the relay deleted and recreated
  it, or a client's metadata request made the broker auto-create it) makes
  every position and committed offset meaningless: they count records of the
  previous incarnation. OffsetCommit metadata could name the topic id, but the
  bundled tansu broker does not keep it (it answers an empty string), so the
  incarnation is remembered where every broker keeps it: each journey record
  names, in a header, the events topic id its events came from.
  While running, the processor compares the topic's id with the one it reads
  (every ``ASSIGNMENT_CHECK_SECONDS``); on assignment, it compares the id in the
  last journey of the partition. Another or a missing id, with a position past
  0, sends the partition back to the beginning, and the beginning is committed
  before any journey names the new id, so a crash in between cannot trust the
  old offsets. The events come again as duplicates, which journeys ignore.
* A changed journey format (``projections.journey.VERSION``) is part of the same
  incarnation: each journey record also names, in a header, the format version it
  was written in. Restoring drops journeys this code cannot read (counted in
  ``unreadable_journeys``), so a partition whose last journey names another version
  (or none) while its position is past 0 is rebuilt: read again from the beginning
  of the events topic, committed first, exactly as for a recreated topic. Once a
  journey of the new version is on the topic, every event below the committed
  offset was folded again since that commit, so a processor that restarts in the
  middle of a rebuild continues from its commits. ``stats()["rebuilding"]`` shows
  each rebuild's offsets and progress (and ``lag`` counts what it has left); a log
  line marks its start and its end.
* A rebuild needs the partition's events from offset 0. Where Kafka deleted some
  (retention, or ``streams.retention.RecordTrimmer`` below every group's commits on
  a broker that honours DeleteRecords) and the restored journeys do not hold them
  (some were unreadable, or there were none), the processor rebuilds what is left,
  logs an error naming the partition and the offsets missing, and counts it in
  ``rebuilds_missing_events``: the views lack those events until the log is
  republished into the topic (``touchpoints relay --reset``; see
  docs/DECISIONS.md).

Why the same consumer group and changelog, not one per version: a new group finds
the events the trimmer deleted below the old group's commits gone (a republish
would be needed on every upgrade), and the old group's commits would pin the topic
until someone deleted it; a changelog per version would double what the bundled
broker holds in memory until the old topic were deleted, and the view feed would
have to find and switch topics. Rewinding the group commits the beginning first,
which also stops the trimmer deleting what the rebuild still reads, and the API
keeps serving its saved view documents (``application.view_documents``) until the
rebuilt journeys have caught up. The price: workers of two versions in one group
rebuild each other's partitions, so an upgrade stops every worker of the old version.

Identity links cross partitions; journeys are per identity stream and grouping
happens in the view server's population, which sees every journey.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from application.collector import settle_long_lived_state
from events.registry import REGISTRY, EventRegistry
from projections import journey as journey_module
from projections.journey import IdentityJourney

from streams import worker_state
from streams.journey_state import FoldResult, JourneyState
from streams.reading import read_to_end
from streams.topics import (
    DEFAULT_COMPRESSION,
    DEFAULT_PARTITIONS,
    EVENTS_TOPIC,
    H_EVENT_ID,
    H_POSITION,
    JOURNEYS_TOPIC,
    TopicDescriber,
    TopicError,
    TopicSpec,
    close_admin,
    compression_type,
    copartitioning_error,
    describe_topics,
    end_offsets,
    ensure_topics,
    recreate_topic,
)

log = logging.getLogger(__name__)

PROCESSOR_GROUP = "touchpoints-journeys"
H_SOURCE_OFFSET = "source_offset"  # header: the events offset of the batch that produced it
H_EVENTS_TOPIC_ID = "events_topic_id"  # header: the events topic incarnation the journey was folded from
H_JOURNEY_VERSION = "journey_version"  # header: the journey format version the record was written in
H_EVENTS_POSITION = "events_position"  # header: "<position> <event id>" of the last event folded on the partition
H_BATCH_END = "batch_end"  # last header of the last journey a batch published to its partition (its fold is all on the topic)


@dataclass
class Rebuild:
    """A partition read again from the beginning of the events topic: why, the offsets
    it refolds (``start`` up to ``end``, the high watermark when it started), how far it
    got, and when it started (``time.monotonic()``)."""

    reason: str
    start: int
    end: int
    started: float
    position: int = 0

    def progress(self, partition: int) -> dict[str, Any]:
        return {"partition": partition, "reason": self.reason, "from": self.start, "to": self.end,
                "at": max(self.position, self.start), "seconds": round(time.monotonic() - self.started, 1)}


PRODUCE_TIMEOUT_MS = 15_000
ASSIGNMENT_CHECK_SECONDS = 5.0  # how often run() compares the assignment with the topic


class JourneyProcessor:
    """The Kafka shell around ``JourneyState``: consume ``touchpoints.events`` in batches
    as a member of the consumer group ``group_id``, fold, produce journeys, commit.

    ``run()`` until ``stop()``; ``stats()`` is safe to call at any time."""

    def __init__(
        self,
        bootstrap: str,
        *,
        events_topic: str = EVENTS_TOPIC,
        journeys_topic: str = JOURNEYS_TOPIC,
        group_id: str = PROCESSOR_GROUP,
        partitions: int = DEFAULT_PARTITIONS,
        max_records: int = 20_000,
        fetch_max_wait_ms: int = 20,
        session_timeout_ms: int = 6000,
        registry: EventRegistry = REGISTRY,
        client_id: str = "touchpoints-processor",
        compression: str = DEFAULT_COMPRESSION,
        journeys_folder: Path | None = None,
        state_folder: Path | None = None,
    ):
        """``journeys_folder``: keep each owned partition's journeys in a file there
        instead of in memory (``JourneyState``). ``state_folder``: save them there at a
        clean stop, and restore on them when the platform handed them over
        (``streams.worker_state``; with ``journeys_folder`` only)."""
        self.bootstrap = bootstrap
        self.compression = compression
        self.events_topic = events_topic
        self.journeys_topic = journeys_topic
        self.group_id = group_id
        self.partitions = partitions
        self.max_records = max_records
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.session_timeout_ms = session_timeout_ms
        self.client_id = client_id
        self.state = JourneyState(registry, journeys_folder)
        self.state_folder = state_folder if journeys_folder is not None else None
        self._handed: worker_state.SavedJourneys | None = None  # the base of the journeys, handed over to this topic
        self._folded: dict[int, tuple[int | None, str | None]] = {}  # partition -> last event folded (position, id)
        self._ran_to_stop = False  # run() returned after stop(): nothing is folded half-way
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: Any = None
        self._producer: Any = None
        self._events_describer = TopicDescriber(bootstrap, events_topic, f"{client_id}-admin")  # the assignment check
        self._topic_id: str | None = None  # the events topic incarnation being read (None: broker shows no ids)
        self._produced: dict[int, int] = {}  # journeys partition -> last offset acknowledged
        self._journeys_renewal_due = False  # the journeys topic is to be recreated at the next assignment
        self._reassigning = False  # partitions revoked, the next assignment not announced yet
        self._counts = {
            "events": 0, "applied": 0, "duplicates": 0, "undecodable": 0, "batches": 0,
            "journeys_published": 0, "restores": 0, "republished_partitions": 0, "commit_failures": 0,
            "rejoins": 0, "topic_recreations": 0, "journeys_topic_recreations": 0, "rewound_partitions": 0,
            "unreadable_journeys": 0, "rebuilds_started": 0, "rebuilds_completed": 0, "rebuilds_missing_events": 0,
            "adopted_partitions": 0, "base_journeys": 0,
        }
        self._rebuilds: dict[int, Rebuild] = {}  # partition -> its rebuild in progress
        self._last_batch_at: float | None = None
        self._last_error: str | None = None
        self._committing: asyncio.Future | None = None
        self._lag: dict[int, int] = {}  # partition -> records behind the high watermark at the last batch

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self._ensure_topics()
        described = await asyncio.to_thread(self._describe_events_topic)
        self._topic_id = described[0] if described else None
        self._take_handed_state()
        self._producer = await self._new_producer()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group_id, client_id=self.client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms, heartbeat_interval_ms=self.session_timeout_ms // 4,
            rebalance_timeout_ms=self.session_timeout_ms * 2, fetch_max_wait_ms=self.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 << 20, metadata_max_age_ms=5000,
        )
        await self._consumer.start()
        self._consumer.subscribe([self.events_topic], listener=_Rebalance(self))

    async def _new_producer(self) -> Any:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=2, max_batch_size=1 << 20,
            max_request_size=8 << 20, request_timeout_ms=PRODUCE_TIMEOUT_MS, client_id=self.client_id,
            compression_type=compression_type(self.compression),
        )
        await producer.start()
        return producer

    async def stop(self) -> None:
        self._stopping.set()

    def _take_handed_state(self) -> None:
        """Keep the base handed over to the events topic read now; discard any other, and a
        saved state the platform did not hand over (the changelog is the truth then)."""
        if self.state_folder is None:
            return
        if (self.state_folder / worker_state.MANIFEST).exists():
            log.info("processor: a saved journeys state was not handed over: discarded")
            worker_state.discard(self.state_folder)
        handed = worker_state.handed_folder(self.state_folder)
        if not (handed / worker_state.MANIFEST).exists():
            return
        self._handed = worker_state.handed_over(handed, self._topic_id)
        if self._handed is None:
            log.info("processor: the journeys handed over to another topic than %s %s: discarded",
                     self.events_topic, self._topic_id)
            worker_state.discard(handed)
        else:
            log.info("processor: partitions %s restore on the journeys handed over (events after position %d "
                     "come again)", sorted(self._handed.positions), self._handed.after)

    def save_state(self) -> bool:
        """At a clean stop: save the journeys of every partition with the last event folded
        into each (``streams.worker_state``), if this member holds the whole, settled
        state. True if saved; why not is logged."""
        if self.state_folder is None:
            return False
        reason = self._unsaveable()
        if reason is not None:
            log.info("processor: journeys state not saved: %s", reason)
            worker_state.discard(self.state_folder)
            return False
        started = time.monotonic()
        partitions = dict(self.state.partitions)
        worker_state.save(self.state_folder, partitions, {p: self._folded[p] for p in partitions},
                          events_topic_id=self._topic_id, published=self._journeys_published())
        log.info("processor: journeys state of partitions %s saved (%d journeys) in %.1f s", sorted(partitions),
                 self.state.identity_count(), time.monotonic() - started)
        return True

    def _journeys_published(self) -> tuple[str | None, dict[int, int]] | None:
        """The journeys topic's id and end offsets (every journey held is on it, before
        them: nothing is published once stopped); None if the broker cannot say."""
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000,
                                     client_id=f"{self.client_id}-admin")
        except Exception as error:  # noqa: BLE001 - kafka-python's errors: the state is saved without it
            log.info("processor: the journeys topic's ends are not known (%r)", error)
            return None
        try:
            described = describe_topics(admin, [self.journeys_topic]).get(self.journeys_topic)
            if described is None:
                return None
            return described[0], end_offsets(admin, self.journeys_topic, described[1])
        except Exception as error:  # noqa: BLE001
            log.info("processor: the journeys topic's ends are not known (%r)", error)
            return None
        finally:
            close_admin(admin, "processor")

    def _unsaveable(self) -> str | None:
        if not self._ran_to_stop:
            return "the processor did not stop cleanly"
        if self._topic_id is None:
            return "the broker shows no topic ids"
        if self._rebuilds or self._reassigning:
            return "a rebuild or a rebalance was under way"
        existing = self._consumer.partitions_for_topic(self.events_topic) if self._consumer is not None else None
        held = set(self.state.partitions)
        if not existing or held != set(existing) or held != {tp.partition for tp in self._owned()}:
            return f"this member holds partitions {sorted(held)} of {sorted(existing or ())}"
        unknown = sorted(held - set(self._folded))
        if unknown:
            return f"the last event folded on partitions {unknown} is not known (restored from older journeys)"
        return None

    async def close(self) -> None:
        """Release the clients; after a clean stop (``run()`` returned) the last commit is
        waited for and the journeys' state saved first (``save_state``)."""
        if self._committing is not None:
            await asyncio.wait({self._committing}, timeout=10)
        if self._ran_to_stop and self.state_folder is not None:
            async with self._lock:  # no rebalance moves partitions while they are saved
                try:  # the next workers restore on it if the broker forgot everything (streams.worker_state)
                    await asyncio.to_thread(self.save_state)
                except Exception:  # noqa: BLE001 - a saved state is a cache: never a failed stop
                    log.exception("saving the journeys state failed: the next worker restores from the changelog")
        for client in (self._consumer, self._producer):
            if client is not None:
                try:
                    await client.stop()
                except Exception as error:  # closing after a broker loss may fail: nothing left to save
                    log.debug("closing %s: %r", client, error)
        self._consumer = self._producer = None
        await asyncio.to_thread(self._close_admin)

    async def run(self) -> None:
        """Process batches until ``stop()``; Kafka errors are retried with backoff."""
        backoff = 0.2
        checked = time.monotonic()
        while not self._stopping.is_set():
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if batches:
                    await self.process(batches)
                else:
                    await self.restore_idle()
                if time.monotonic() - checked >= ASSIGNMENT_CHECK_SECONDS:
                    checked = time.monotonic()
                    described = await asyncio.to_thread(self._describe_events_topic)
                    self.rejoin_if_assignment_is_stale(described[1] if described else None)
                    async with self._lock:
                        await self.follow_events_topic(*(described or (None, None)))
                backoff = 0.2
            except KafkaError as error:
                self._last_error = f"{type(error).__name__}: {error}"
                log.warning("processor: %s; retrying in %.1f s", self._last_error, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self._ran_to_stop = True

    def rejoin_if_assignment_is_stale(self, existing: set[int] | None) -> bool:
        """Rejoin the group when this member holds partitions the events topic no longer
        has (``existing``, as the broker describes it now; None: unknown). After a broker
        lost its data, a client may recreate the topic with the broker's default layout
        before the relay restores the configured one; an assignment made in between names
        partitions that then do not exist, the consumer's own metadata keeps them, and
        fetching them returns nothing, ever. True if it rejoined."""
        assigned = {tp.partition for tp in self._consumer.assignment()}
        if not assigned or not existing or assigned <= existing:
            return False
        log.warning("processor: assigned partitions %s but %s has %s: rejoining the group",
                    sorted(assigned), self.events_topic, sorted(existing))
        self._consumer.unsubscribe()
        self._consumer.subscribe([self.events_topic], listener=_Rebalance(self))
        self._counts["rejoins"] += 1
        return True

    async def follow_events_topic(self, topic_id: str | None, existing: set[int] | None = None) -> bool:
        """Compare the events topic's id (as described now, with its partitions ``existing``;
        None: unknown) with the one being read. Another id means the topic was recreated:
        the journeys topic is renewed (``_renew_journeys``), every assigned partition goes
        back to its beginning (committed first), and partitions held but no longer
        assigned are forgotten, so their next assignment restores and checks them. True
        if the topic was recreated."""
        if topic_id is None or topic_id == self._topic_id:
            return False
        previous = self._topic_id
        if previous is not None:
            log.warning("processor: %s was recreated (id %s is now %s): reading it from the beginning",
                        self.events_topic, previous, topic_id)
            await self._renew_journeys(existing)
            assigned = self._owned()
            for partition in [p for p in self.state.partitions if TopicPartition(self.events_topic, p) not in assigned]:
                self.state.drop(partition)
            self._rebuilds.clear()  # their offsets counted the previous topic's records
            await self._read_from_beginning(sorted(tp for tp in assigned if self.state.owns(tp.partition)))
            self._counts["topic_recreations"] += 1
        self._topic_id = topic_id
        return previous is not None

    async def _renew_journeys(self, existing: set[int] | None) -> bool:
        """The broker lost data (the events topic was recreated, or acknowledged journeys
        offsets went backwards: the bundled broker restarted). Stop the producer, waiting
        for what it still had in flight, and start a new one; a member holding every
        partition of the events topic (``existing``) also deletes and recreates the
        journeys topic. Why: the bundled tansu accepts a produce from a client whose
        metadata predates its restart and keeps it for the topic of that name, created
        later or auto-created by a metadata request (with its default layout), where it
        collides with new writes (the broker refuses a batch at an offset it holds, and
        the view feed cannot read past it) or stands after newer journeys. Between two
        assignments (nothing held) the recreation waits for the next assignment
        (``_journeys_renewal_due``). With several members, deleting would drop journeys
        the others just republished, so they only renew their producers (a bundled
        broker serves one worker in the embedded default; Kafka does not lose a topic).
        True if the topic was recreated: the caller publishes every journey again."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), PRODUCE_TIMEOUT_MS / 1000 + 5)
            except Exception as error:  # noqa: BLE001 - closing after a broker loss may fail: nothing to save
                log.info("processor: the producer did not close cleanly: %r", error)
        self._produced.clear()  # offsets of the previous topic
        self._producer = await self._new_producer()
        owned = {tp.partition for tp in self._owned()}
        if not owned or not existing:
            self._journeys_renewal_due = True
            return False
        self._journeys_renewal_due = False
        if not owned >= existing:
            return False
        spec = TopicSpec(self.journeys_topic, len(existing), {"cleanup.policy": "compact"})
        try:
            topic_id, partitions = await asyncio.to_thread(self._recreate_journeys_topic, spec)
        except Exception as error:  # noqa: BLE001 - kafka-python's errors; the journeys are published again anyway
            log.warning("processor: could not recreate %s (%r): publishing into it as it is", self.journeys_topic, error)
            return False
        log.warning("processor: recreated %s (id %s, %d partitions) before publishing again",
                    self.journeys_topic, topic_id, len(partitions))
        self._counts["journeys_topic_recreations"] += 1
        return True

    async def _journeys_lost(self, partitions: list[int]) -> None:
        """Acknowledged offsets of these journeys partitions went backwards: they lost
        their records. Renew the journeys topic and publish every journey of it again
        (of these partitions only, where another member may hold the others)."""
        described = await asyncio.to_thread(self._describe_events_topic)
        if await self._renew_journeys(described[1] if described else None):
            partitions = sorted(self.state.partitions)
        for partition in partitions:
            await self._republish(partition)

    def _recreate_journeys_topic(self, spec: TopicSpec) -> tuple[str | None, list[int]]:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=PRODUCE_TIMEOUT_MS,
                                 client_id=f"{self.client_id}-admin")
        try:
            return recreate_topic(admin, self.bootstrap, spec)
        finally:
            close_admin(admin, "processor")

    async def _read_from_beginning(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Move ``tps`` to their first record and commit that before anything folded from
        them is published: a journey naming the current topic id and format then never
        stands beside an offset committed into an older incarnation. Returns each one's
        first offset (above 0 where Kafka deleted the records below)."""
        if not tps:
            return {}
        if self._committing is not None:
            await asyncio.wait({self._committing})  # an older commit must not land after this one
        await self._consumer.seek_to_beginning(*tps)
        beginnings = {tp: await self._consumer.position(tp) for tp in tps}
        await self._consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in beginnings.items()})
        self._counts["rewound_partitions"] += len(tps)
        return beginnings

    def _describe_events_topic(self) -> tuple[str | None, set[int]] | None:
        """The events topic's id and partitions as the broker describes them; None if the
        broker cannot say."""
        described = self._events_describer.describe()
        return None if described is None else (described[0], set(described[1]))

    def _close_admin(self) -> None:
        self._events_describer.close()

    # --- one batch ------------------------------------------------------------------

    async def process(self, batches: dict[Any, Sequence[Any]]) -> None:
        """Fold one ``getmany`` result, publish the touched journeys, then commit. If any
        of it fails, the batch is read again: its events are then duplicates, and a
        duplicate still publishes its journey, so nothing folded is left unpublished."""
        async with self._lock:
            assigned = self._owned()
            owned = [tp for tp in batches if tp in assigned]
            # fetched for an assignment not announced yet: fetched again once it is
            self._rewind([tp for tp in batches if tp not in assigned], batches)
            try:
                commits = await self._fold_and_publish(owned, batches)
            except BaseException:
                self._rewind(owned, batches)
                raise
            self._counts["batches"] += 1
            self._last_batch_at = time.time()
        settle_long_lived_state()  # the journeys live on: keep them out of full collections
        if commits:
            # the commit overlaps the next fetch and fold; one in flight at a time
            if self._committing is not None:
                await self._committing
            self._committing = asyncio.ensure_future(self._commit(commits))

    async def _fold_and_publish(self, owned: list[TopicPartition], batches: dict[Any, Sequence[Any]]) -> dict:
        fresh = {tp: (batches[tp][0].offset, batches[tp][-1].offset + 1) for tp in owned
                 if not self.state.owns(tp.partition)}
        rewound = await self._restore_and_check(fresh)
        commits = {}
        pending = []
        rebuilt = []
        folded = {}
        lags = {}
        for tp in owned:
            if tp in rewound:  # these records came from a position that meant another incarnation
                continue
            records = batches[tp]
            result = self.state.fold(tp.partition, ((r.value, r.headers) for r in records))
            self._count(len(records), result)
            last = _event_named(records[-1].headers)
            if last is not None:
                folded[tp.partition] = last
            if result.touched:
                pending.append((tp.partition, result.touched, records[-1].offset, last))
            commits[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
            high = self._consumer.highwater(tp)
            if high is not None:
                lags[tp.partition] = max(high - records[-1].offset - 1, 0)
            rebuild = self._rebuilds.get(tp.partition)
            if rebuild is not None:
                rebuild.position = records[-1].offset + 1
                if rebuild.position >= rebuild.end:
                    rebuilt.append(tp.partition)
        await self._publish(pending)
        # only now: a lag of 0 says the batch's journeys are on the journeys topic (the stats,
        # written every second, may be taken while they are still being sent)
        self._lag.update(lags)
        self._folded.update(folded)
        for partition in rebuilt:  # their journeys are on the topic now
            self._finish_rebuild(partition)
        return commits

    def _rewind(self, owned: list[TopicPartition], batches: dict[Any, Sequence[Any]]) -> None:
        """Move the consumer back to the first record of the batch on each partition it
        still holds (the fetch position had moved past records not yet in a journey on
        the topic, and a later batch's commit would have skipped them for good)."""
        for tp in owned:
            try:
                self._consumer.seek(tp, batches[tp][0].offset)
            except (IllegalStateError, ValueError) as error:  # revoked meanwhile: its next owner reads it
                log.debug("processor: rewinding %s: %r", tp, error)

    def _count(self, records: int, result: FoldResult) -> None:
        counts = self._counts
        counts["events"] += records
        counts["applied"] += result.applied
        counts["duplicates"] += result.duplicates
        if result.undecodable:
            counts["undecodable"] += len(result.undecodable)
            self._last_error = f"undecodable record skipped: {result.undecodable[-1]}"
            log.error("processor skipped %d undecodable records, e.g. %s",
                      len(result.undecodable), result.undecodable[-1])

    async def _publish(self, pending: list[tuple[int, dict[str, IdentityJourney], int, tuple | None]]) -> None:
        sent = []
        for partition, journeys, source_offset, last in pending:
            headers = self._journey_headers(source_offset, last)
            items = ((key.encode(), journey.to_bytes()) for key, journey in journeys.items())
            sent.append((partition, await self._send_all(partition, items, headers)))
            self._counts["journeys_published"] += len(journeys)
        lost = []
        for partition, batches in sent:
            lowest, highest = await _acknowledged(batches)
            previous = self._produced.get(partition)
            self._produced[partition] = highest
            if previous is not None and lowest <= previous:
                lost.append(partition)
        if lost:
            await self._journeys_lost(lost)

    def _journey_headers(self, source_offset: int, last: tuple[int | None, str | None] | None) -> list:
        headers = [(H_SOURCE_OFFSET, str(source_offset).encode()),
                   (H_JOURNEY_VERSION, str(journey_module.VERSION).encode())]
        if self._topic_id is not None:
            headers.append((H_EVENTS_TOPIC_ID, self._topic_id.encode()))
        if last is not None and last[0] is not None:
            headers.append((H_EVENTS_POSITION, f"{last[0]} {last[1]}".encode()))
        return headers

    async def _send_all(
        self, partition: int, items: Iterable[tuple[bytes, bytes]], headers: list
    ) -> list[tuple[asyncio.Future, int]]:
        """Produce one record per encoded journey (key, value) to ``partition``, in record
        batches built here (the producer's batch API: no future and no metadata object per
        record, ~3x cheaper than ``send`` per record); returns each batch's future and size."""
        producer = self._producer
        sent: list[tuple[asyncio.Future, int]] = []
        batch = producer.create_batch()
        held = None  # each journey is appended once the next is known: the last one is marked
        for item in items:
            if held is not None:
                batch = await self._append(batch, sent, partition, held, headers)
            held = item
        if held is not None:  # a reader that applied it holds the whole fold its headers name
            batch = await self._append(batch, sent, partition, held, [*headers, (H_BATCH_END, b"1")])
        if batch.record_count():
            sent.append((await producer.send_batch(batch, self.journeys_topic, partition=partition),
                         batch.record_count()))
        return sent

    async def _append(self, batch: Any, sent: list, partition: int, item: tuple[bytes, bytes], headers: list) -> Any:
        """Append one journey record to ``batch``, or send the full batch first (into ``sent``)
        and start another: the batch to append to next."""
        key_bytes, value = item
        if batch.append(key=key_bytes, value=value, timestamp=None, headers=headers) is None:  # full
            sent.append((await self._producer.send_batch(batch, self.journeys_topic, partition=partition),
                         batch.record_count()))
            batch = self._producer.create_batch()  # the first record of a batch always fits
            batch.append(key=key_bytes, value=value, timestamp=None, headers=headers)
        return batch

    async def _republish(self, partition: int) -> None:
        """The journeys partition lost its records (offsets went backwards): produce
        every journey of it again so the view server can rebuild from the topic."""
        journeys = self.state.journeys(partition)
        log.warning("journeys partition %d lost data: republishing its %d journeys", partition, len(journeys))
        batches = await self._send_all(partition, self.state.encoded(partition),
                                       self._journey_headers(-1, self._folded.get(partition)))
        if batches:
            self._produced[partition] = (await _acknowledged(batches))[1]
        self._counts["republished_partitions"] += 1

    async def _commit(self, offsets: dict) -> None:
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # a rebalance moved the partitions: their next owner refolds, idempotently
            self._counts["commit_failures"] += 1
            log.info("processor commit skipped (%s): partitions moved", type(error).__name__)
        except KafkaError as error:
            self._counts["commit_failures"] += 1
            self._last_error = f"commit: {type(error).__name__}: {error}"
            log.warning("processor %s", self._last_error)

    # --- restore and rebalance ------------------------------------------------------------

    async def restore_idle(self) -> None:
        """Restore and check the assigned partitions that had nothing to fetch (their
        committed offset is at the end): after an upgrade, a partition of another journey
        format must rebuild without waiting for a new event."""
        async with self._lock:
            idle = [tp for tp in self._owned() if not self.state.owns(tp.partition)]
            if idle:
                positions = {tp: await self._consumer.committed(tp) or 0 for tp in idle}
                await self._restore_and_check({tp: (offset, offset) for tp, offset in positions.items()})
            for tp in self._owned():  # restored with nothing fetched since: its lag, from the broker's end
                high = self._consumer.highwater(tp)
                if tp.partition not in self._lag and self.state.owns(tp.partition) and high is not None:
                    self._lag[tp.partition] = max(high - await self._consumer.position(tp), 0)

    async def _restore_and_check(self, fresh: dict[TopicPartition, tuple[int, int]]) -> set:
        """Restore newly assigned partitions (``fresh``: the offsets of the first record to
        fold and after the last fetched); then rebuild, from the beginning, every one
        whose last journey names another incarnation (events topic id or journey format
        version; or none) while its position is past offset 0: its committed offset
        counted another topic's records, or its journeys were folded in a format this
        code cannot continue. Returns the partitions sent back (their fetched records are
        not folded), including those a recreation noticed now sent back."""
        if not fresh:
            return set()
        described = await asyncio.to_thread(self._describe_events_topic)
        rewound: set = set()
        if await self.follow_events_topic(*(described or (None, None))):
            rewound |= {tp for tp in self._owned() if self.state.owns(tp.partition)}
        elif self._journeys_renewal_due and await self._renew_journeys(described[1] if described else None):
            # the journeys held were published into the topic deleted now; restored from it, the
            # newly assigned ones are empty and their partitions are rebuilt from the events
            for partition in [p for p in self.state.partitions if p not in {tp.partition for tp in fresh}]:
                await self._republish(partition)
        incarnations = await self._restore([tp.partition for tp in fresh])
        stale = {tp: reason for tp, (position, _) in fresh.items() if position > 0
                 and (reason := self._stale_reason(*incarnations[tp.partition]))}
        if stale:
            try:
                await self._rebuild(stale, {tp: fresh[tp][1] for tp in stale})
            except BaseException:
                for tp in stale:  # restored and checked again with their next batch
                    self.state.drop(tp.partition)
                raise
        return rewound | set(stale)

    def _stale_reason(self, topic_id: str | None, version: str | None) -> str | None:
        """Why journeys naming ``topic_id`` and format ``version`` (None: not named) cannot
        be continued from the committed offset; None if they can."""
        current = str(journey_module.VERSION)
        if version != current:
            return f"journeys of format version {version or '(unnamed)'}, this processor writes {current}"
        if self._topic_id is not None and topic_id != self._topic_id:
            return f"journeys folded from events topic id {topic_id or '(unnamed)'}, now {self._topic_id}"
        return None

    async def _rebuild(self, stale: dict[TopicPartition, str], fetched_to: dict[TopicPartition, int]) -> None:
        """Read ``stale`` partitions again from the beginning (committed first), each
        tracked as a ``Rebuild`` up to its high watermark now (at least ``fetched_to``).
        One whose beginning is past 0 and whose restored journeys do not hold the
        deleted events is reported: those events must come from a republish."""
        beginnings = await self._read_from_beginning(sorted(stale))
        for tp, reason in sorted(stale.items()):
            start, partition = beginnings[tp], tp.partition
            end = max(self._consumer.highwater(tp) or 0, fetched_to[tp])
            self._rebuilds[partition] = Rebuild(reason, start, end, time.monotonic())
            self._lag[partition] = max(end - start, 0)
            self._counts["rebuilds_started"] += 1
            log.warning("processor: rebuilding partition %d of %s (%s): refolding offsets %d to %d",
                        partition, self.events_topic, reason, start, end)
            unreadable = self.state.unreadable.get(partition, 0)
            if start > 0 and (unreadable or not self.state.journeys(partition)):
                self._counts["rebuilds_missing_events"] += 1
                self._last_error = (
                    f"partition {partition} of {self.events_topic} is rebuilt from offset {start}: the events "
                    f"below were deleted from Kafka and its restored journeys do not hold them ({unreadable} "
                    f"unreadable); the views lack them until the log is republished (touchpoints relay --reset)")
                log.error("processor: %s", self._last_error)
            if end <= start:  # nothing left to refold
                self._finish_rebuild(partition)

    def _finish_rebuild(self, partition: int) -> None:
        rebuild = self._rebuilds.pop(partition, None)
        if rebuild is None:
            return
        self._counts["rebuilds_completed"] += 1
        log.warning("processor: partition %d of %s rebuilt (%s): offsets %d to %d refolded in %.1f s",
                    partition, self.events_topic, rebuild.reason, rebuild.start, rebuild.position,
                    time.monotonic() - rebuild.started)

    async def _restore(self, partitions: list[int]) -> dict[int, tuple[str | None, str | None]]:
        """Restore partitions from the journeys topic, over the base handed over when there
        is one (``streams.worker_state``); returns, per partition, the events topic id and
        the journey format version its last journey names (None: no journey, or one without
        the header; a partition on a base with nothing over it: the base's)."""
        handed = self._handed
        based = {p: handed.file(p) for p in partitions if handed is not None and p in handed.positions}
        started = time.monotonic()
        records: dict[int, list[tuple[bytes | None, bytes | None]]] = {p: [] for p in partitions}
        incarnations: dict[int, tuple[str | None, str | None]] = {
            p: (handed.events_topic_id, str(journey_module.VERSION)) if p in based else (None, None)
            for p in partitions}
        last_folded: dict[int, tuple[int, str] | None] = {
            p: (handed.positions[p], handed.event_ids[p]) if p in based else None for p in partitions}
        restored_to: dict[int, int] = {}  # partition -> offset of the last journey read back
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                  client_id=f"{self.client_id}-restore", fetch_max_wait_ms=50)
        await reader.start()
        try:
            existing = await self._journey_partitions(reader)
            tps = [TopicPartition(self.journeys_topic, p) for p in partitions if p in existing]
            if tps:
                reader.assign(tps)
                await reader.seek_to_beginning(*tps)
                for tp, batch in (await read_to_end(reader, tps)).items():
                    records[tp.partition].extend((r.key, r.value) for r in batch)
                    if batch:
                        restored_to[tp.partition] = batch[-1].offset
                        headers = batch[-1].headers
                        incarnations[tp.partition] = (_header_text(headers, H_EVENTS_TOPIC_ID),
                                                      _header_text(headers, H_JOURNEY_VERSION))
                        last_folded[tp.partition] = last_folded_event(headers)
        finally:
            await reader.stop()
        # a base is copied, not read row by row: the partitions at once, out of the event loop
        built = await asyncio.gather(*(asyncio.to_thread(self.state.restored, p, records[p], base=based.get(p))
                                       for p in partitions))
        restored = {p: self.state.install(p, journeys) for p, journeys in zip(partitions, built)}
        for partition, count in restored.items():
            last = last_folded[partition] or ((None, None) if count == 0 else None)
            if last is not None:
                self._folded[partition] = last
        for partition, offset in restored_to.items():  # published by an earlier incarnation: on the topic
            self._produced[partition] = max(self._produced.get(partition, -1), offset)
        self._counts["restores"] += len(partitions)
        self._counts["adopted_partitions"] += len(based)
        self._counts["base_journeys"] += sum(restored[p] for p in based)
        self._counts["unreadable_journeys"] += sum(self.state.unreadable[p] for p in partitions)
        log.info("restored journeys %s in %.2f s%s", restored, time.monotonic() - started,
                 f" (partitions {sorted(based)} on the journeys handed over)" if based else "")
        return incarnations

    async def _journey_partitions(self, reader: Any) -> set[int]:
        partitions = reader.partitions_for_topic(self.journeys_topic)
        if partitions is None:
            topics = await reader.topics()
            if self.journeys_topic not in topics:
                await self._ensure_topics()
                return set()
            partitions = reader.partitions_for_topic(self.journeys_topic) or set()
        return set(partitions)

    def _owned(self) -> set[TopicPartition]:
        """The partitions this member may restore, fold and publish: its assignment, but
        none between a revocation and the next assignment (the consumer still names the
        previous partitions then, while the group may give them to other members)."""
        return set() if self._reassigning else set(self._consumer.assignment())

    async def on_revoked(self, partitions: Iterable[int]) -> None:
        async with self._lock:
            self._reassigning = True
            for partition in partitions:
                self._forget(partition)

    async def on_assigned(self, partitions: Iterable[int]) -> None:
        """A new assignment: forget every journey still held, restored before it (another
        member may have folded those partitions since); each assigned partition is
        restored before its first batch."""
        async with self._lock:
            for partition in list(self.state.partitions):
                self._forget(partition)
            self._reassigning = False
        log.info("processor assigned partitions %s", sorted(partitions))

    def _forget(self, partition: int) -> None:
        self.state.drop(partition)
        self._folded.pop(partition, None)
        self._produced.pop(partition, None)
        self._lag.pop(partition, None)
        if self._rebuilds.pop(partition, None) is not None:  # its next owner continues from the commits
            log.info("processor: partition %d revoked during its rebuild", partition)

    async def _ensure_topics(self) -> None:
        specs = [TopicSpec(self.events_topic, self.partitions),
                 TopicSpec(self.journeys_topic, self.partitions, {"cleanup.policy": "compact"})]
        try:
            counts = await asyncio.to_thread(ensure_topics, self.bootstrap, self.partitions, specs=specs)
            mismatch = copartitioning_error(counts, self.events_topic, self.journeys_topic)
        except TopicError as error:  # the platform's own topic names are checked in there
            mismatch = error
        if mismatch is not None:
            if not await self._repair_journeys_layout():
                raise mismatch
            await asyncio.to_thread(ensure_topics, self.bootstrap, self.partitions, specs=specs)

    async def _repair_journeys_layout(self) -> bool:
        """The journeys topic is not co-partitioned with the events topic. After the
        bundled broker lost its data while no worker ran, a client's metadata request may
        have auto-created it with the broker's default layout. If no partition's last
        journey was folded from the events topic there now (each names that incarnation in
        a header), nothing in it could be restored anyway (``_stale_reason``): recreate it
        with the events topic's layout; else leave it to the operator. True if recreated."""
        described = await asyncio.to_thread(self._describe_events_topic)
        if not described or described[0] is None:
            return False
        events_id, events_partitions = described
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                  client_id=f"{self.client_id}-layout", fetch_max_wait_ms=50)
        await reader.start()
        try:
            tps = [TopicPartition(self.journeys_topic, p) for p in sorted(await self._journey_partitions(reader))]
            if tps:
                reader.assign(tps)
                await reader.seek_to_beginning(*tps)
                batches = await read_to_end(reader, tps)
            else:
                batches = {}
        finally:
            await reader.stop()
        named = {_header_text(batch[-1].headers, H_EVENTS_TOPIC_ID) for batch in batches.values() if batch}
        if len(tps) == len(events_partitions) or events_id in named:
            return False
        spec = TopicSpec(self.journeys_topic, len(events_partitions), {"cleanup.policy": "compact"})
        topic_id, partitions = await asyncio.to_thread(self._recreate_journeys_topic, spec)
        log.warning("processor: %s had %d partitions and no journey of %s %s: recreated it with %d (id %s)",
                    self.journeys_topic, len(tps), self.events_topic, events_id, len(partitions), topic_id)
        self._counts["journeys_topic_recreations"] += 1
        return True

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    # --- health --------------------------------------------------------------------

    def lag(self) -> int | None:
        """Records of the assigned partitions not folded yet, as of each one's last batch,
        the start of its rebuild, or the idle fetch after its restore. None while any
        assigned partition is not restored and measured so: a readiness check
        must not take a partition still being restored for one with nothing left."""
        held = set(self.state.partitions)
        assigned = {tp.partition for tp in self._owned()} if self._consumer is not None else held
        if not assigned or any(p not in self._lag or p not in held for p in assigned):
            return None
        return sum(self._lag[p] for p in assigned)

    def watermarks(self) -> dict[str, dict[int, int]]:
        """What a readiness check compares with the relay's checkpoint and the view feed:
        per events partition, the log position of the last event folded whose journeys
        the broker acknowledged (``folded_positions``); per journeys partition, the offset
        of the last journey acknowledged (``published_offsets``). Both only move once the
        journeys are on the topic, and the folds are read first: every journey of a
        folded event is below the published offsets read with it."""
        folded = {p: position for p, (position, _) in list(self._folded.items()) if position is not None}
        return {"folded_positions": folded, "published_offsets": dict(self._produced)}

    def stats(self) -> dict[str, Any]:
        consumer = self._consumer
        assigned = sorted(tp.partition for tp in consumer.assignment()) if consumer is not None else []
        return {
            **self.watermarks(),
            **self._counts,
            "group": self.group_id,
            "assigned": assigned,
            "restored": sorted(self.state.partitions),
            "identities": self.state.identity_count(),
            "journeys_on_disk": self.state.journeys_folder is not None,
            "lag": self.lag(),
            "rebuilding": [rebuild.progress(partition) for partition, rebuild in sorted(self._rebuilds.items())],
            "last_batch_at": self._last_batch_at,
            "last_error": self._last_error,
        }


def _header_text(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode()
    return None


def _event_named(headers: Sequence[tuple[str, bytes]] | None) -> tuple[int, str] | None:
    """The position and id of the event a ``touchpoints.events`` record carries."""
    position, event_id = _header_text(headers, H_POSITION), _header_text(headers, H_EVENT_ID)
    return (int(position), event_id) if position is not None and event_id is not None else None


def last_folded_event(headers: Sequence[tuple[str, bytes]] | None) -> tuple[int, str] | None:
    """The last event folded on the partition, as a journey record names it."""
    text = _header_text(headers, H_EVENTS_POSITION)
    if text is None:
        return None
    position, _, event_id = text.partition(" ")
    return int(position), event_id


async def _acknowledged(batches: list[tuple[asyncio.Future, int]]) -> tuple[int, int]:
    """Wait for the broker to acknowledge record batches of one partition; the lowest and
    highest offsets they were written at."""
    written = [(metadata.offset, size) for metadata, (_, size) in
               zip(await asyncio.gather(*(future for future, _ in batches)), batches)]
    return min(base for base, _ in written), max(base + size - 1 for base, size in written)


class _Rebalance(ConsumerRebalanceListener):
    """Drops revoked partitions' state; assigned ones are restored lazily, before their
    first batch or at the first fetch that brought nothing, so a restore that fails
    (broker away) is simply tried again. Nothing is restored, folded or published from
    the revocation until the next assignment is announced here."""

    def __init__(self, processor: JourneyProcessor):
        self.processor = processor

    async def on_partitions_revoked(self, revoked):
        await self.processor.on_revoked(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned):
        await self.processor.on_assigned(tp.partition for tp in assigned)
