"""The whole platform after an upgrade that changed the journey format: the log was relayed
and folded by a processor of the previous format (journeys on the topic, the group's offsets
committed past every event, the relay's checkpoint at the head), then the platform starts
with the current format. Its worker rebuilds the journeys from the events and the live
views equal a replay of the log; the worker's stats (``/healthz``) show the rebuilds."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from application.demo import generate
from application.ingest import Ingestor
from consumers.platform import Platform
from events.factory import open_store
from events.registry import REGISTRY
from projections import journey as journey_module
from streams.checkpoint import SqliteCheckpointStore
from streams.processors import PROCESSOR_GROUP
from streams.relay import Relay
from streams.topics import EVENTS_TOPIC
from tests.streams.conftest import PLATFORM_HEADERS, assert_views_converge, platform_settings, wait_until
from tests.streams.processor_runs import (
    PARTITIONS, folded_until, partition_ends, processor, replayed, running, wait_committed,
)

pytestmark = pytest.mark.slow


def relay_the_log(settings) -> None:
    """The platform's relay, run to the head of the log: its checkpoint then says so."""
    store = open_store(settings.store_url)
    checkpoints = SqliteCheckpointStore(settings.data / "relay.db")
    relay = Relay(store, settings.kafka, checkpoints, partitions=PARTITIONS).start()
    try:
        assert relay.wait_for(store.head_position(), timeout=60), "the relay did not publish the log"
    finally:
        relay.stop()
        checkpoints.close()
        store.close()


def fold_in_the_older_format(settings, monkeypatch) -> None:
    """A processor of the platform's group and topics, in the previous journey format,
    folds the log and commits past every event."""
    current = journey_module.VERSION
    monkeypatch.setattr(journey_module, "VERSION", current - 1)
    store = open_store(settings.store_url)
    try:
        async def fold() -> None:
            async with running(processor(settings.kafka, {})) as old:  # the default topics and group
                assert await folded_until(old, replayed(store)) == replayed(store)
                await wait_committed(settings.kafka, EVENTS_TOPIC, PROCESSOR_GROUP, partition_ends(store))

        asyncio.run(fold())
    finally:
        monkeypatch.setattr(journey_module, "VERSION", current)
        store.close()


def test_platform_upgraded_to_another_journey_format__rebuilds_and_views_equal_a_replay(
    kafka_broker, tmp_path, monkeypatch
):
    kafka_broker.restart()
    settings = platform_settings(tmp_path, kafka_broker.bootstrap, partitions=PARTITIONS)
    store = open_store(settings.store_url)
    Ingestor(store).append([REGISTRY.validate(item) for item in generate(300, seed=2718)])
    store.close()

    # given the log relayed and folded by the previous journey format, offsets committed past it
    relay_the_log(settings)
    fold_in_the_older_format(settings, monkeypatch)

    # when the platform starts with the current format
    platform = Platform(settings)
    platform.start()
    try:
        platform.wait_ready()

        # then the live views equal a replay of the log
        assert_views_converge(platform, timeout=90)
        # and /healthz shows the worker's rebuild of every partition, finished, nothing missing
        def rebuilt() -> dict | None:
            with httpx.Client(base_url=platform.base_url, headers=PLATFORM_HEADERS, timeout=10) as client:
                processor = client.get("/healthz").json()["components"]["worker"].get("processor") or {}
            return processor if processor.get("rebuilds_completed") == PARTITIONS else None

        stats = wait_until(rebuilt, 30, "the worker's stats to show the rebuilds")
        assert stats["rebuilds_started"] == PARTITIONS and stats["rebuilding"] == []
        assert stats["rebuilds_missing_events"] == 0 and stats["unreadable_journeys"] > 0
    finally:
        platform.stop()

