"""The bulk read path: the log as pages of raw rows, for full scans.

The audit replay and verify read millions of events and cannot afford an envelope per
event. A ``RawReader`` (the SQLite adapter) reads its rows natively; ``read_raw`` adapts
``read_all``'s envelopes to the same rows for any other store, so each full scan is one
loop over one row shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Protocol, runtime_checkable

from events.store import EventStore
from events.times import to_micros

RAW_COLUMNS = (
    "position", "stream_id", "stream_version", "event_id", "type", "schema_version",
    "occurred_at", "recorded_at", "data", "metadata", "hash",
)
RAW_PAGE_SIZE = 20_000
RawPage = tuple[list[tuple], dict[int, str]]  # (rows, stream names by stream_id)


@runtime_checkable
class RawReader(Protocol):
    """A store that reads its log as pages of raw rows (the SQLite adapter), for full scans
    that read millions of events and cannot afford an envelope per event.

    ``read_raw`` yields ``(rows, stream_names)``: rows of ``columns`` (a selection of
    ``RAW_COLUMNS`` starting with ``position`` and holding ``stream_id``; fewer columns read
    faster) in position order, exactly as stored (times in microseconds since the epoch
    UTC, ``event_id`` 16 bytes), and a dict from ``stream_id`` to stream name covering
    every row yielded so far; ``ValueError`` for other columns or a page size below one.

    A raw reader's log also promises what the port does not: positions are dense (1, 2,
    3...: a hole means events were removed, which verify names) and ``recorded_at`` never
    decreases along the log (a replay up to a moment stops at the first event after it)."""

    def read_raw(
        self, from_position: int = 0, *, page_size: int = RAW_PAGE_SIZE, columns: Sequence[str] = RAW_COLUMNS
    ) -> Iterator[RawPage]: ...


def read_raw(
    store: EventStore, from_position: int = 0, *, page_size: int = RAW_PAGE_SIZE, columns: Sequence[str] = RAW_COLUMNS
) -> Iterator[RawPage]:
    """The log as raw pages (see ``RawReader``) from any store: the store's own ``read_raw``,
    else ``read_all``'s envelopes as the same rows, with stream ids numbered here and
    ``hash`` None where the store keeps none. Such a log promises neither dense positions
    nor ordered ``recorded_at``."""
    if isinstance(store, RawReader):
        return store.read_raw(from_position, page_size=page_size, columns=columns)
    return _raw_pages_through_port(store, from_position, page_size, columns)


def checked_raw_request(page_size: int, columns: Sequence[str]) -> tuple[str, ...]:
    """The columns of a ``read_raw`` call as a tuple; ``ValueError`` if it cannot be served."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
    columns = tuple(columns)
    if columns[:1] != ("position",) or "stream_id" not in columns or not set(columns) <= set(RAW_COLUMNS):
        raise ValueError(f"columns must start with position, hold stream_id and be among {RAW_COLUMNS}")
    return columns


def _raw_pages_through_port(
    store: EventStore, from_position: int, page_size: int, columns: Sequence[str]
) -> Iterator[RawPage]:
    columns = checked_raw_request(page_size, columns)
    pick = itemgetter(*(RAW_COLUMNS.index(column) for column in columns))
    ids: dict[str, int] = {}
    names: dict[int, str] = {}
    rows: list[tuple] = []
    for recorded in store.read_all(from_position):
        stream_id = ids.get(recorded.stream)
        if stream_id is None:
            stream_id = ids[recorded.stream] = len(ids) + 1
            names[stream_id] = recorded.stream
        rows.append(pick((  # in RAW_COLUMNS order
            recorded.position, stream_id, recorded.stream_version, recorded.event_id.bytes, recorded.type,
            recorded.schema_version, to_micros(recorded.occurred_at), to_micros(recorded.recorded_at),
            recorded.data, recorded.metadata, recorded.hash,
        )))
        if len(rows) == page_size:
            yield rows, names
            rows = []
    if rows:
        yield rows, names
