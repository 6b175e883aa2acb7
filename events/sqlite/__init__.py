"""The embedded SQLite adapter of the event-store port (``events.store.EventStore``)."""

from events.sqlite.store import SQLiteEventStore

__all__ = ["SQLiteEventStore"]
