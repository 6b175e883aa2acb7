"""Choose the event-store adapter from a URL (the ``TOUCHPOINTS_STORE`` setting)."""

from __future__ import annotations

from events.store import EventStore

SQLITE_SCHEMES = ("sqlite",)
KURRENTDB_SCHEMES = ("esdb", "esdb+discover", "kurrentdb", "kurrentdb+discover")


def open_store(url: str) -> EventStore:
    """``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
    ``sqlite:///:memory:`` -> the embedded SQLite store; ``esdb://``, ``esdb+discover://``,
    ``kurrentdb://``, ``kurrentdb+discover://`` -> a KurrentDB (EventStoreDB) server.
    Any other URL raises ``ValueError`` naming it and the accepted schemes."""
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    if separator and scheme in SQLITE_SCHEMES:
        from events.sqlite import SQLiteEventStore

        return SQLiteEventStore.open(url)
    if separator and scheme in KURRENTDB_SCHEMES:
        from events.kurrentdb import KurrentDBEventStore  # optional adapter, imported on use

        return KurrentDBEventStore.open(url)
    accepted = ", ".join(f"{s}://" for s in SQLITE_SCHEMES + KURRENTDB_SCHEMES)
    raise ValueError(f"unsupported event store URL {url!r}: accepted schemes are {accepted}")
