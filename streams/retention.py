"""Trimming what the broker holds of a topic below every reader's committed offset.

The event store is the log of record (the relay republishes from it whenever the
broker lost data), so Kafka need not keep the records that every consumer group
reading a topic has committed past. ``RecordTrimmer`` asks, per topic, for the
committed offsets of the groups that must read it (one that has not committed on a
partition blocks trimming there) and of any other group that committed on it, and
deletes the records below the lowest with the Kafka ``DeleteRecords`` API.

The bundled broker (tansu 0.6.0, memory engine) does not implement DeleteRecords:
the request panics the broker task serving the connection, which drops (the broker
keeps serving). Nor does it apply ``retention.ms``, ``retention.bytes``,
``cleanup.policy=compact`` or segment settings: it holds every record until the
topic is deleted. The trimmer notices the refusal, stops asking, and says so in
``stats()`` (shown by ``/healthz``).

``touchpoints.journeys`` is never trimmed here: it is the journey processor's
changelog and the view feed reads it whole, so only compaction (latest journey per
key) may shorten it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from streams.topics import close_admin, describe_topics

log = logging.getLogger(__name__)

REFUSALS_BEFORE_GIVING_UP = 3  # dropped DeleteRecords requests while the broker keeps answering


def trim_points(admin: Any, topic: str, required_groups: Sequence[str]) -> dict[int, int]:
    """Per partition of ``topic``, the offset below which every reader has committed:
    the lowest committed offset over ``required_groups`` and every other group with
    a commit on the topic. Such a group without a commit on a partition gives 0
    there (nothing may go). Empty if the topic does not exist."""
    from kafka import TopicPartition

    found = describe_topics(admin, [topic])
    if topic not in found:
        return {}
    partitions = [TopicPartition(topic, p) for p in found[topic][1]]
    groups = dict.fromkeys(required_groups)
    groups.update(dict.fromkeys(group["group_id"] for group in admin.list_groups()))
    committed = admin.list_group_offsets({group: partitions for group in groups})
    points = {tp.partition: None for tp in partitions}
    for group, offsets in committed.items():
        found_offsets = {tp: found.offset if found is not None else -1 for tp, found in offsets.items()}
        if group not in required_groups and all(offset < 0 for offset in found_offsets.values()):
            continue  # this group never read the topic: it needs nothing of it
        for tp in partitions:
            offset = max(found_offsets.get(tp, -1), 0)
            current = points[tp.partition]
            points[tp.partition] = offset if current is None else min(current, offset)
    return {partition: point or 0 for partition, point in points.items()}


class RecordTrimmer:
    """Deletes the records of each topic in ``readers`` (``{topic: required groups}``)
    that every reader has committed past, each time ``run_once()`` is called (the worker
    calls it every ``interval`` seconds). Blocking (kafka-python); ``stats()`` is safe
    from any thread. Errors are logged and retried next round."""

    def __init__(self, bootstrap: str | Sequence[str], readers: Mapping[str, Sequence[str]], *,
                 interval: float = 30.0, request_timeout: float = 10.0):
        self.bootstrap = bootstrap
        self.readers = {topic: tuple(groups) for topic, groups in readers.items()}
        self.interval = interval
        self.request_timeout = request_timeout
        self._admin: Any = None
        self._trimmed: dict[str, dict[int, int]] = {}  # topic -> partition -> offset deleted below
        self._refusals = 0
        self._supported: bool | None = None  # unknown until the broker answered a DeleteRecords
        self._last_error: str | None = None
        self._lock = threading.Lock()

    def run_once(self) -> dict[str, dict[int, int]]:
        """Delete what every reader committed past; returns ``{topic: {partition: offset}}``
        for the partitions trimmed this round (empty once the broker refused)."""
        from kafka import TopicPartition
        from kafka.errors import KafkaConnectionError, KafkaError

        if self._supported is False:
            return {}
        done: dict[str, dict[int, int]] = {}
        try:
            admin = self._connect()
            for topic, groups in self.readers.items():
                previous = self._trimmed.get(topic, {})
                # a point below the previous one: the topic was recreated, or a group rewound
                wanted = {p: o for p, o in trim_points(admin, topic, groups).items() if 0 < o != previous.get(p)}
                if not wanted:
                    continue
                started = time.monotonic()
                try:
                    admin.delete_records({TopicPartition(topic, p): o for p, o in wanted.items()},
                                         timeout_ms=int(self.request_timeout * 1000))
                except KafkaConnectionError as error:
                    self.close()
                    self._note_refusal(error)
                    return done
                log.info("record trimmer: %s deleted below %s in %.2f s", topic, wanted, time.monotonic() - started)
                done[topic] = wanted
                with self._lock:
                    self._trimmed.setdefault(topic, {}).update(wanted)
                    self._supported, self._refusals, self._last_error = True, 0, None
        except (KafkaError, OSError) as error:
            self.close()
            with self._lock:
                self._last_error = f"{type(error).__name__}: {error}"
            log.warning("record trimmer: %s (retrying in %.0f s)", self._last_error, self.interval)
        return done

    def _note_refusal(self, error: Exception) -> None:
        """A DeleteRecords whose connection dropped while the broker still answers is
        how tansu refuses it; a broker that is down is only an error, retried next round."""
        from streams.broker import broker_answers

        bootstrap = self.bootstrap if isinstance(self.bootstrap, str) else ",".join(self.bootstrap)
        refused = not self._supported and broker_answers(bootstrap)
        with self._lock:
            self._last_error = f"{type(error).__name__}: {error}"
            if refused:
                self._refusals += 1
                if self._refusals >= REFUSALS_BEFORE_GIVING_UP:
                    self._supported = False
        if self._supported is False:
            log.warning("record trimmer: the broker drops every DeleteRecords request (the bundled "
                        "tansu broker does not implement it): it keeps every record; trimming stops")
        else:
            log.warning("record trimmer: %s (retrying in %.0f s)", self._last_error, self.interval)

    def stats(self) -> dict[str, Any]:
        """``/healthz``: whether the broker trims, and each topic's offsets trimmed below."""
        with self._lock:
            return {
                "status": "ok",
                "deletes_records": self._supported,
                "trimmed_below": {topic: dict(points) for topic, points in self._trimmed.items()},
                "last_error": self._last_error,
            }

    def close(self) -> None:
        """Close the admin connection (the next round opens a new one)."""
        admin, self._admin = self._admin, None
        close_admin(admin, "record trimmer")

    def _connect(self) -> Any:
        if self._admin is None:
            from kafka import KafkaAdminClient

            timeout_ms = int(self.request_timeout * 1000)
            self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=timeout_ms,
                                           bootstrap_timeout_ms=timeout_ms, client_id="touchpoints-trimmer")
        return self._admin
