"""Reading partitions to their end, as far as the broker really holds them."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)

STALLED_POLLS = 25  # fetches (200 ms each) without progress below the watermark before read_to_end gives up


async def read_to_end(
    reader: AIOKafkaConsumer, tps: list[TopicPartition], *, idle_polls: int = 3, stalled_polls: int = STALLED_POLLS
) -> dict:
    """Every record from the current positions to the end of the given partitions.

    The end is the high watermark of fetch responses, not ``end_offsets()``: the
    bundled broker answers ListOffsets with the base offset of the last record batch
    plus one, short of the real end. A partition that never reports a watermark
    counts as empty after ``idle_polls`` fetches that returned nothing. One that stays
    below its watermark for ``stalled_polls`` fetches in a row counts as ended there,
    with a warning: a broker that lost data in a restart can report records it no
    longer has (a produce that failed half-way), and waiting for them would stop the
    caller for good (the processor's restore, and with it every view)."""
    records: dict[TopicPartition, list[Any]] = {tp: [] for tp in tps}
    remaining = set(tps)
    stalled = dict.fromkeys(tps, 0)
    idle = 0
    while remaining:
        fetched = await reader.getmany(*remaining, timeout_ms=200)
        for tp, batch in fetched.items():
            records[tp].extend(batch)
        idle = 0 if fetched else idle + 1
        for tp in list(remaining):
            high = reader.highwater(tp)
            stalled[tp] = 0 if fetched.get(tp) else stalled[tp] + 1
            if high is None:
                if idle >= idle_polls:
                    remaining.discard(tp)
                continue
            position = await reader.position(tp)
            if position >= high:
                remaining.discard(tp)
            elif stalled[tp] >= stalled_polls:
                log.warning("%s-%d: no record from offset %d up to the reported end %d after %d fetches: "
                            "reading it as ended there", tp.topic, tp.partition, position, high, stalled_polls)
                remaining.discard(tp)
    return records
