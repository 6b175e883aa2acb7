"""The platform's Kafka topics, how they are created, and the record format of
``touchpoints.events``.

``touchpoints.events``: key = the event's identity stream (``customer-42``), so
every event of one identity lands on one partition; value = the canonical stored
body (``events.registry.encode_body``); headers carry the envelope (type, schema
version, event id, global position, recorded_at, stream, stream version,
occurred_at) so a consumer decodes through the registry only what it needs.
``touchpoints.journeys`` is co-partitioned with it (same partition count, same
keys) and created compacted: a broker that compacts keeps the latest journey per
identity (the bundled tansu broker compacts nothing: it keeps every version).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from kafka.partitioner.default import murmur2

from events.times import to_micros, utc_text_of_micros
from events.logged import LoggedEvent
from events.registry import REGISTRY, EventRegistry
from events.store import RecordedEvent

log = logging.getLogger(__name__)

EVENTS_TOPIC = "touchpoints.events"
INBOUND_TOPIC = "touchpoints.inbound"
DEADLETTER_TOPIC = "touchpoints.deadletter"
APP_ID = "touchpoints"  # the Faust app of the worker: its consumer group reads touchpoints.inbound
JOURNEYS_TOPIC = "touchpoints.journeys"
DEFAULT_PARTITIONS = 6

# header names of touchpoints.events records
H_TYPE = "type"
H_SCHEMA_VERSION = "schema_version"
H_EVENT_ID = "event_id"
H_POSITION = "position"
H_RECORDED_AT = "recorded_at"
H_STREAM = "stream"
H_STREAM_VERSION = "stream_version"
H_OCCURRED_AT = "occurred_at"

Headers = Mapping[str, bytes] | Sequence[tuple[str, bytes]]
Record = tuple[bytes, bytes, list[tuple[str, bytes]]]  # (key, value, headers) of one record


# How the relay and the processors compress what they produce (TOUCHPOINTS_KAFKA_COMPRESSION).
# A broker keeps record batches as they were produced: measured on the bundled broker, demo
# events took 304 bytes of its memory a record uncompressed, 99 with lz4, 76 with zstd, for
# the same producer CPU (bench/broker_memory); consumers decompress in C (cramjam, zstandard).
DEFAULT_COMPRESSION = "zstd"


def compression_type(codec: str) -> str | None:
    """The producers' ``compression_type`` for a ``TOUCHPOINTS_KAFKA_COMPRESSION`` value."""
    return None if codec == "none" else codec


class TopicError(RuntimeError):
    """A platform topic cannot be created, or exists with an unusable layout."""


class MalformedRecord(ValueError):
    """A ``touchpoints.events`` record lacks a header or holds an unreadable one."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def platform_topics(partitions: int = DEFAULT_PARTITIONS, *, compact_journeys: bool = True) -> list[TopicSpec]:
    """Every topic the platform uses. The dead-letter topic has one partition: it is
    small and operators read it in arrival order. The events and inbound topics keep
    their records until ``streams.retention`` deletes what every reader committed past:
    a time or size limit would drop records a slow or stopped group still needs."""
    journeys_config = {"cleanup.policy": "compact"} if compact_journeys else {}
    kept_until_read = {"retention.ms": "-1", "retention.bytes": "-1"}
    return [
        TopicSpec(EVENTS_TOPIC, partitions, kept_until_read),
        TopicSpec(INBOUND_TOPIC, partitions, kept_until_read),
        TopicSpec(DEADLETTER_TOPIC, 1),
        TopicSpec(JOURNEYS_TOPIC, partitions, journeys_config),
    ]


def ensure_topics(
    bootstrap: str | Sequence[str],
    partitions: int = DEFAULT_PARTITIONS,
    *,
    specs: Iterable[TopicSpec] | None = None,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Create the missing topics (idempotent; concurrent callers are fine) and return
    each topic's actual partition count. Raises ``TopicError`` if the events and
    journeys topics end up with different partition counts (they must be
    co-partitioned) or the broker refuses a creation."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    wanted = list(specs) if specs is not None else platform_topics(partitions)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000),
                             bootstrap_timeout_ms=int(timeout * 1000), client_id="touchpoints-topics")
    try:
        deadline = time.monotonic() + timeout
        counts = describe_partition_counts(admin, [spec.name for spec in wanted])
        missing = [spec for spec in wanted if spec.name not in counts]
        for spec in missing:
            try:
                admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=dict(spec.config))]
                )
                log.info("created topic %s (%d partitions)", spec.name, spec.partitions)
            except TopicAlreadyExistsError:
                pass  # another process created it meanwhile
            except KafkaError as error:
                raise TopicError(f"cannot create topic {spec.name!r}: {error}") from error
        while True:
            counts = describe_partition_counts(admin, [spec.name for spec in wanted])
            if len(counts) == len(wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        admin.close()
    absent = [spec.name for spec in wanted if spec.name not in counts]
    if absent:
        raise TopicError(f"topics {absent} still do not exist after {timeout:.0f} s")
    _check_copartitioned(counts)
    for spec in wanted:
        if counts[spec.name] != spec.partitions:
            log.warning("topic %s has %d partitions, %d configured: keeping the existing layout",
                        spec.name, counts[spec.name], spec.partitions)
    return counts


def describe_partition_counts(admin, topics: Sequence[str]) -> dict[str, int]:
    """Partition counts of the topics that exist (missing topics are left out)."""
    return {name: len(partitions) for name, (_, partitions) in describe_topics(admin, topics).items()}


def describe_topics(admin, topics: Sequence[str]) -> dict[str, tuple[str | None, list[int]]]:
    """``{topic: (topic_id, partition ids)}`` for the topics that exist."""
    found: dict[str, tuple[str | None, list[int]]] = {}
    for item in admin.describe_topics(list(topics)):
        if item.get("error_code", 0) != 0 or not item.get("partitions"):
            continue
        topic_id = item.get("topic_id")
        found[item["name"]] = (
            str(topic_id) if topic_id else None,
            sorted(p["partition_index"] for p in item["partitions"]),
        )
    return found


def recreate_topic(admin, bootstrap: str | Sequence[str], spec: TopicSpec, *, timeout: float = 30.0,
                   attempts: int = 3) -> tuple[str | None, list[int]]:
    """Delete ``spec``'s topic and create it anew with its layout; again if a client's
    metadata request made the broker auto-create it in between with another layout (tansu
    does, with four partitions). Returns its id and partitions. Used after a broker lost
    its data: deleting also drops what a producer whose metadata predates the loss wrote
    meanwhile (see ``streams.relay``). A missing topic is created before it is deleted:
    the bundled broker keeps such records for a topic it does not have and serves them in
    the topic once it exists."""
    from kafka.errors import UnknownTopicOrPartitionError

    topic_id, partitions = None, []
    for _ in range(attempts):
        ensure_topics(bootstrap, specs=[spec], timeout=timeout)
        try:
            admin.delete_topics([spec.name])
        except UnknownTopicOrPartitionError:
            pass  # already gone: a broker that lost its data may not have it (yet)
        _wait_topic_gone(admin, spec.name)
        ensure_topics(bootstrap, specs=[spec], timeout=timeout)
        topic_id, partitions = describe_topics(admin, [spec.name]).get(spec.name, (None, []))
        if len(partitions) == spec.partitions:
            break
    return topic_id, partitions


def _wait_topic_gone(admin, topic: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while topic in describe_topics(admin, [topic]) and time.monotonic() < deadline:
        time.sleep(0.1)


class TopicDescriber:
    """Fresh descriptions of a topic (an admin request, not a consumer's cached metadata)
    through a kafka-python admin client opened on first use and dropped after a failure."""

    def __init__(self, bootstrap: str, topic: str, client_id: str):
        self.bootstrap = bootstrap
        self.topic = topic
        self.client_id = client_id
        self._admin: Any = None

    def describe(self) -> tuple[str | None, list[int]] | None:
        """``(topic id, partition ids)``; None if the topic does not exist or the broker
        cannot say (blocking: call it from a thread in async code)."""
        from kafka.errors import KafkaError

        try:
            if self._admin is None:
                from kafka import KafkaAdminClient

                self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000,
                                               client_id=self.client_id)
            return describe_topics(self._admin, [self.topic]).get(self.topic)
        except (KafkaError, OSError) as error:
            log.debug("%s: describing %s failed: %r", self.client_id, self.topic, error)
            self.close()
            return None

    def close(self) -> None:
        admin, self._admin = self._admin, None
        close_admin(admin, self.client_id)


def end_offsets(admin, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """Each partition's end offset (the offset the next record gets), as the broker says."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    answer = admin.list_partition_offsets({TopicPartition(topic, p): OffsetSpec.LATEST for p in partitions})
    return {tp.partition: found.offset for tp, found in answer.items()}


def close_admin(admin, owner: str) -> None:
    """Close a kafka-python admin client (None: nothing to close); one that a lost broker
    broke may fail to close, and then there is nothing left to save."""
    if admin is None:
        return
    try:
        admin.close()
    except Exception as error:  # noqa: BLE001
        log.debug("%s: closing the admin client: %r", owner, error)


def _check_copartitioned(counts: Mapping[str, int]) -> None:
    error = copartitioning_error(counts, EVENTS_TOPIC, JOURNEYS_TOPIC)
    if error is not None:
        raise error


def copartitioning_error(counts: Mapping[str, int], events_topic: str, journeys_topic: str) -> TopicError | None:
    """The error to raise if both topics exist with different partition counts, else None."""
    events, journeys = counts.get(events_topic), counts.get(journeys_topic)
    if events is None or journeys is None or events == journeys:
        return None
    return TopicError(
        f"{events_topic} has {events} partitions but {journeys_topic} has {journeys}: they must be "
        "co-partitioned; recreate one of them (or set TOUCHPOINTS_PARTITIONS to match)"
    )


def partition_for_key(key: bytes | str, partitions: int) -> int:
    """The partition Kafka's default partitioner (kafka-python, aiokafka, Faust, the
    Java client) picks for a keyed record: murmur2 of the key bytes."""
    data = key.encode() if isinstance(key, str) else key
    return (murmur2(data) & 0x7FFFFFFF) % partitions


# --- touchpoints.events records --------------------------------------------------


def event_record(recorded: RecordedEvent) -> Record:
    """``(key, value, headers)`` of the record carrying one stored event."""
    return event_records((recorded,))[0]


# the stored columns a record is made of (``events.raw``), in the order ``raw_event_records`` reads them
RECORD_COLUMNS = ("position", "stream_id", "stream_version", "event_id", "type", "schema_version",
                  "occurred_at", "recorded_at", "data")


def event_records(page: Iterable[RecordedEvent]) -> list[Record]:
    """The records of a page of stored events, in order (see ``raw_event_records``)."""
    rows = [(event.position, event.stream, event.stream_version, event.event_id.bytes, event.type,
             event.schema_version, to_micros(event.occurred_at), to_micros(event.recorded_at), event.data)
            for event in page]
    return raw_event_records(rows, {row[1]: row[1] for row in rows})  # the name stands for the stream id


def raw_event_records(rows: Iterable[tuple], stream_names: Mapping[Any, str]) -> list[Record]:
    """The records of stored rows of ``RECORD_COLUMNS`` (``events.raw.read_raw``; the
    relay reads the log so), in order, built from the stored values without decoding
    them: the value is the stored body as it is, the headers its envelope as text. The
    events of one append share one ``recorded_at``, so its text is made once for them."""
    records: list[Record] = []
    recorded_micros, recorded_text = None, b""
    names: dict[Any, bytes] = {}
    for position, stream_id, version, event_id, type_, schema_version, occurred, recorded, data in rows:
        if recorded != recorded_micros:
            recorded_micros, recorded_text = recorded, utc_text_of_micros(recorded).encode()
        stream = names.get(stream_id)
        if stream is None:
            stream = names[stream_id] = stream_names[stream_id].encode()
        hex_id = event_id.hex()
        records.append((stream, data, [
            (H_TYPE, type_.encode()),
            (H_SCHEMA_VERSION, b"%d" % schema_version),
            (H_EVENT_ID, f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}".encode()),
            (H_POSITION, b"%d" % position),
            (H_RECORDED_AT, recorded_text),
            (H_STREAM, stream),
            (H_STREAM_VERSION, b"%d" % version),
            (H_OCCURRED_AT, utc_text_of_micros(occurred).encode()),
        ]))
    return records


def recorded_from_record(value: bytes, headers: Headers) -> RecordedEvent:
    """The stored event a ``touchpoints.events`` record carries (metadata and hash are
    not published: they stay in the store)."""
    found = dict(headers.items() if isinstance(headers, Mapping) else headers)

    def text(name: str) -> str:
        raw = found.get(name)
        if raw is None:
            raise MalformedRecord(f"header {name!r} is missing")
        return raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)

    try:
        return RecordedEvent(
            position=int(text(H_POSITION)),
            stream=text(H_STREAM),
            stream_version=int(text(H_STREAM_VERSION)),
            event_id=UUID(text(H_EVENT_ID)),
            type=text(H_TYPE),
            schema_version=int(text(H_SCHEMA_VERSION)),
            occurred_at=datetime.fromisoformat(text(H_OCCURRED_AT)),
            recorded_at=datetime.fromisoformat(text(H_RECORDED_AT)),
            data=bytes(value),
            metadata=b"{}",
        )
    except (ValueError, UnicodeDecodeError) as error:
        if isinstance(error, MalformedRecord):
            raise
        raise MalformedRecord(f"unreadable header: {error}") from None


def logged_from_record(value: bytes, headers: Headers, registry: EventRegistry = REGISTRY) -> LoggedEvent:
    """Decode a ``touchpoints.events`` record into what projections fold."""
    return record_decoder(registry)(value, headers)


def record_decoder(registry: EventRegistry = REGISTRY) -> Callable[[bytes, Headers], LoggedEvent]:
    """A decoder of ``touchpoints.events`` records for one batch: it reads only the headers
    a ``LoggedEvent`` needs (type, schema version, position, stream, recorded_at; the event
    id and times are in the body), parses recorded_at once per distinct value (one append
    shares it), and decodes through the registry's one decoder (``decode_logged``).
    Raises ``MalformedRecord`` for a missing or unreadable header."""
    decode = registry.decode_logged
    times: dict[bytes, datetime] = {}

    def decode_record(value: bytes, headers: Headers) -> LoggedEvent:
        found = dict(headers)
        try:
            type_name = found[H_TYPE].decode()
            version = int(found[H_SCHEMA_VERSION])
            position = int(found[H_POSITION])
            stream = found[H_STREAM].decode()
            raw_time = found[H_RECORDED_AT]
        except KeyError as missing:
            raise MalformedRecord(f"header {missing.args[0]!r} is missing") from None
        except (ValueError, UnicodeDecodeError, AttributeError) as error:
            raise MalformedRecord(f"unreadable header: {error}") from None
        recorded_at = times.get(raw_time)
        if recorded_at is None:
            try:
                recorded_at = times[raw_time] = datetime.fromisoformat(raw_time.decode())
            except (ValueError, UnicodeDecodeError, AttributeError) as error:
                raise MalformedRecord(f"unreadable header {H_RECORDED_AT!r}: {error}") from None
        return decode(type_name, version, value, position, recorded_at, stream)

    return decode_record
