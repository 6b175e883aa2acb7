"""The KurrentDB (EventStoreDB) adapter of the event-store port (``events.store.EventStore``)."""

from events.kurrentdb.store import KurrentDBEventStore

__all__ = ["KurrentDBEventStore"]
