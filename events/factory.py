"""Choose the event-store adapter from a URL (the ``TOUCHPOINTS_STORE`` setting)."""

from __future__ import annotations

from pathlib import Path

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
        from events.sqlite.store import SQLiteEventStore

        return SQLiteEventStore.open(url)
    if separator and scheme in KURRENTDB_SCHEMES:
        from events.kurrentdb.store import KurrentDBEventStore  # optional adapter, imported on use

        return KurrentDBEventStore.open(url)
    accepted = ", ".join(f"{s}://" for s in SQLITE_SCHEMES + KURRENTDB_SCHEMES)
    raise ValueError(f"unsupported event store URL {url!r}: accepted schemes are {accepted}")


def open_existing_store(url: str) -> EventStore:
    """``open_store`` for commands that only read (views, replay, verify): a SQLite URL must
    name an existing file. Opening creates the file, so a mistyped path would otherwise become
    an empty log that verifies clean and shows empty views. Raises ``ValueError`` naming the path."""
    scheme, separator, _ = url.partition("://")
    if separator and scheme.lower() in SQLITE_SCHEMES:
        from events.sqlite.store import MEMORY, path_from_url

        path = path_from_url(url)
        if path != MEMORY and not Path(path).exists():
            raise ValueError(
                f"no event store at {path}: the file does not exist (check --store, TOUCHPOINTS_STORE "
                "and TOUCHPOINTS_DATA; `touchpoints ingest` or `touchpoints serve` creates it)"
            )
    return open_store(url)
