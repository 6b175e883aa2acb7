"""The Faust app of the touchpoints worker: the inbound agent plus the journey processor.

``create_app`` builds a configured app; nothing connects until a worker starts it
(``touchpoints worker``). Settings chosen for the bundled broker: it holds a
consumer-group join for about half the session timeout, so the session timeout is
6 s (joins take ~3-5 s instead of ~30 s with Faust's default). Values stay raw
bytes (``value_serializer="raw"``): decoding goes through ``events.registry``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust
from mode import Service

from application.collector import PAUSES
from application.ingest import Ingestor
from application.privacy.mode import settle
from application.privacy.policy import ingest_registry
from events.registry import REGISTRY
from events.store import EventStore
from streams.inbound import InboundHandler, register_inbound
from streams import worker_state
from streams.processors import PROCESSOR_GROUP, JourneyProcessor
from streams.retention import RecordTrimmer
from streams.topics import APP_ID, DEADLETTER_TOPIC, DEFAULT_PARTITIONS, EVENTS_TOPIC, INBOUND_TOPIC, JOURNEYS_TOPIC

SESSION_TIMEOUT_SECONDS = 6.0


class TouchpointsApp(faust.App):
    """A Faust app that also knows its journey processor, inbound handler and record
    trimmer (for stats)."""

    processor: JourneyProcessor | None = None
    inbound: InboundHandler | None = None
    trimmer: RecordTrimmer | None = None
    early_service: type[Service] | None = None  # started with the app, before Faust's own group join
    _early_started: Service | None = None

    async def on_start(self) -> None:
        await super().on_start()
        # Services added with ``app.service`` start once Faust's consumer has joined its group and
        # recovered; the journey processor joins a group of its own, and the bundled broker holds
        # each join for half the session timeout (~3 s): started here, the two joins overlap.
        if self.early_service is not None and self._early_started is None:
            self._early_started = self.early_service(loop=self.loop, beacon=self.beacon)
            self.add_dependency(self._early_started)  # stopped with the app
            await self._early_started.maybe_start()

    def worker_stats(self) -> dict[str, Any]:
        try:
            faust_assigned = len(self.consumer.assignment())
        except Exception:  # the consumer is created when the worker starts
            faust_assigned = 0
        return {
            "faust_assigned_partitions": faust_assigned,
            "processor": self.processor.stats() if self.processor is not None else None,
            "inbound": self.inbound.stats() if self.inbound is not None else None,
            "retention": self.trimmer.stats() if self.trimmer is not None else None,
            "collector": PAUSES.stats(),
        }


def faust_broker_urls(bootstrap: str) -> list[str]:
    """``host:port[,host:port]`` (optionally ``kafka://``-prefixed) as Faust broker URLs."""
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    if not servers:
        raise ValueError("bootstrap: no Kafka server given (TOUCHPOINTS_KAFKA)")
    return [s if s.startswith("kafka://") else f"kafka://{s}" for s in servers]


def plain_bootstrap(bootstrap: str) -> str:
    return ",".join(s.strip().removeprefix("kafka://") for s in bootstrap.split(",") if s.strip())


def create_app(
    settings: Any,
    *,
    bootstrap: str | None = None,
    store: EventStore | None = None,
    app_id: str = APP_ID,
    processor_group: str = PROCESSOR_GROUP,
    events_topic: str = EVENTS_TOPIC,
    journeys_topic: str = JOURNEYS_TOPIC,
    inbound_topic: str = INBOUND_TOPIC,
    deadletter_topic: str = DEADLETTER_TOPIC,
    processors: bool = True,
) -> TouchpointsApp:
    """The worker's app. ``bootstrap`` defaults to ``settings.kafka``; ``store`` enables
    the inbound agent (it appends to it); ``processors`` the journey processor."""
    bootstrap = plain_bootstrap(bootstrap if bootstrap is not None else settings.kafka)
    partitions = getattr(settings, "partitions", DEFAULT_PARTITIONS)
    data = Path(getattr(settings, "data", "data"))
    app = TouchpointsApp(
        app_id,
        broker=faust_broker_urls(bootstrap),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        datadir=str(data / "faust"),
        topic_partitions=partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_SECONDS,
        broker_heartbeat_interval=SESSION_TIMEOUT_SECONDS / 4,
        broker_rebalance_timeout=SESSION_TIMEOUT_SECONDS * 2,
        broker_request_timeout=SESSION_TIMEOUT_SECONDS * 3,
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_linger=0.002,
    )
    if store is not None:
        app.inbound = register_inbound(
            app, Ingestor(store, _ingest_registry(settings, store)),
            inbound_topic=inbound_topic, deadletter_topic=deadletter_topic,
        )
    if processors:
        processor = JourneyProcessor(
            bootstrap, events_topic=events_topic, journeys_topic=journeys_topic,
            group_id=processor_group, partitions=partitions, compression=settings.kafka_compression,
            journeys_folder=data / "worker" if getattr(settings, "worker_journeys_on_disk", False) else None,
            state_folder=worker_state.state_folder(data) if getattr(settings, "worker_saves_state", False) else None,
        )
        app.processor = processor
        app.early_service = _processor_service(processor)
    return app


def _ingest_registry(settings: Any, store: EventStore) -> Any:
    """What the inbound agent ingests with: sealing as the log was started (``settle``)."""
    settled = settle(settings, store)
    return ingest_registry(REGISTRY, settled.sealing, data=settled.data)


def _processor_service(processor: JourneyProcessor) -> type[Service]:
    class JourneyProcessorService(Service):
        """Runs the journey processor for as long as the Faust worker runs; if the
        processor fails for good, the worker crashes (its supervisor restarts it)."""

        _running: Any = None

        async def on_start(self) -> None:
            await processor.start()
            self._running = self.add_future(self._run())

        async def _run(self) -> None:
            try:
                await processor.run()
            except asyncio.CancelledError:
                if not self.should_stop:
                    # Not our stop: the client cancelled it (a broker that restarted closed a
                    # fetch). A worker left without its processor would look alive and fold
                    # nothing, so crash it: the supervisor restarts it and it restores.
                    await self.crash(RuntimeError("the journey processor was cancelled while running"))
                raise
            except Exception as error:
                await self.crash(error)

        async def on_stop(self) -> None:
            await processor.stop()
            if self._running is not None:
                await asyncio.wait({self._running}, timeout=10)
            await processor.close()  # the last commit, then the journeys' state saved (a clean stop)

    return JourneyProcessorService
