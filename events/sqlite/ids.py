"""The SQLite writer's in-memory index of every stored event id (idempotency).

An index on random (uuid4) ids inside SQLite dirties one random page per event per
commit; this index costs the commit nothing. It has three parts:

- ``main``: sorted numpy arrays of each id's ``index_key`` (a 32-bit hash of all its 16
  bytes) and the position of the row holding it, as uint32 while every position fits
  (4 billion events; int64 past that): 8 bytes per event, 82 MiB at 10.8M events. A batch
  is looked up with one ``np.searchsorted``; a key hit is confirmed by reading the rows at
  the candidate positions and comparing the full 16-byte ids. A new id meets another's
  key with the chance (ids held) / 2^32: 0.25% at 10.8M ids, so most batches of 500 read
  one or two rows they did not need (one query); at 270M ids it is 6%. The hash takes
  every byte, so uuid7 ids of one millisecond (which share their first 8) do not collide
  more than random ones. It was the id's first 8 bytes, 12 bytes an event.
- ``middle``: arrays as ``main``'s, of the ids merged since ``main`` last was, merged into
  ``main`` once they outgrow 1/16 of it (a merge is one O(n) pass, so an event costs O(1)
  amortized);
- ``recent``: a dict of full id -> position for the ids committed since the last merge,
  merged into ``middle`` past ``MERGE_MIN`` of them. Positions only, not (position, version)
  tuples: millions of small tuples are garbage-collector work (measured: 3 us per event
  added); the version of a found id is read with its row, as for ``main``. It was merged
  into ``main`` straight, so it grew to 1/16 of ``main`` at ~150 bytes an id: ~100 MB
  before each merge at 10.8M ids, where ``middle`` holds them at 8 bytes.

Only committed ids are added (the writer adds a transaction's ids after its COMMIT).
Built lazily at a store object's first append from the persisted snapshot (table
``id_snapshot``: ``main`` in chunks, as of ``upto_position``) plus a scan of the rows
after it. The snapshot is rewritten inside a write transaction once the rows after it
outnumber max(100k, a quarter of it): each rewrite writes 12 bytes per indexed event,
so over a growing log that is about 12 x 5 = 60 bytes per appended event, amortized
(an event row is ~300-500 bytes).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import orjson

log = logging.getLogger(__name__)

SNAPSHOT_MIN_TAIL = 100_000  # rows after the snapshot before it is rewritten (at least)
SNAPSHOT_CHUNK = 1 << 20  # entries per id_snapshot row: blobs of 8 MiB, far below SQLite's 1 GB limit
MERGE_MIN = 65_536  # recent ids kept before they are merged into the middle arrays (~150 bytes an id)
MERGE_FRACTION = 16  # the middle arrays may grow to 1/16 of main

_KEY = np.dtype("<u4")  # index keys, in memory and in the snapshot
_MIX_HIGH, _MIX_LOW = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)  # odd: the products keep every bit

SNAPSHOT_TABLE = """
CREATE TABLE IF NOT EXISTS id_snapshot (
    chunk INTEGER PRIMARY KEY,
    upto_position INTEGER NOT NULL,
    keys BLOB NOT NULL,
    positions BLOB NOT NULL
)"""

_ROWS_AT = "SELECT event_id, position, stream_version FROM events WHERE position IN (SELECT value FROM json_each(?))"
_ROWS_AFTER = "SELECT event_id, position FROM events WHERE position > ? ORDER BY position"
_SCAN_PAGE = 100_000
SMALL_SCAN = 50_000  # rows a scan may read through the writer's own page cache
SCAN_CACHE_KIB = 4096  # the page cache of a longer scan

_NARROW = np.uint32  # positions while they fit: 4 bytes an event fewer than int64
_NARROW_MAX = np.iinfo(_NARROW).max
_EMPTY_KEYS, _EMPTY_POSITIONS = np.empty(0, _KEY), np.empty(0, _NARROW)

IdPlaces = dict[bytes, tuple[int, int]]  # event id -> (position, stream_version)
IdPositions = dict[bytes, int]  # event id -> position


def keys_of(ids: Sequence[bytes]) -> np.ndarray:
    """The ``id_key`` of each 16-byte id (signed big-endian first 8 bytes), as native int64."""
    if not ids:
        return np.empty(0, np.int64)
    return np.frombuffer(b"".join(ids), dtype=">i8")[::2].astype(np.int64)


def index_keys(ids: Sequence[bytes]) -> np.ndarray:
    """The in-memory index's key of each 16-byte id: the top 32 bits of a multiply-xor mix
    of its two halves (every byte counts)."""
    if not ids:
        return np.empty(0, _KEY)
    halves = np.frombuffer(b"".join(ids), dtype="<u8")
    mixed = (halves[0::2] * _MIX_HIGH) ^ (halves[1::2] * _MIX_LOW)  # wraps modulo 2^64, as meant
    return (mixed >> np.uint64(32)).astype(_KEY)


class IdIndex:
    """Every event id of the log up to the writer's head (see the module docstring)."""

    def __init__(self) -> None:
        self.built = False
        self._keys, self._positions = _EMPTY_KEYS, _EMPTY_POSITIONS
        self._middle_keys, self._middle_positions = _EMPTY_KEYS, _EMPTY_POSITIONS
        self._recent: IdPositions = {}
        self._snapshot_size = 0  # entries in the persisted snapshot this index knows of

    def __len__(self) -> int:
        return len(self._keys) + len(self._middle_keys) + len(self._recent)

    # --- building and growing ---------------------------------------------------------

    def build(self, conn: sqlite3.Connection, head: int) -> None:
        """Load the snapshot and scan the rows after it, up to ``head`` (call inside a
        transaction, so the rows cannot move underneath)."""
        first = conn.execute("SELECT upto_position FROM id_snapshot ORDER BY chunk LIMIT 1").fetchone()
        upto = first[0] if first else 0
        if upto > head:  # a snapshot ahead of the log: not this log's, ignore it
            upto = 0
        self._recent = {}
        self._middle_keys, self._middle_positions = _EMPTY_KEYS, _EMPTY_POSITIONS
        with _page_cache_limited(conn, upto > 0):  # the snapshot's blobs: 12 bytes an id, read once
            snapshot = _read_snapshot(conn) if upto else None
        if snapshot is None:  # none, or one of 8-byte keys (before 32-bit hashes): every row is scanned
            upto = 0
            snapshot = (_EMPTY_KEYS, _EMPTY_POSITIONS)
        self._keys, self._positions = snapshot
        self._snapshot_size = len(self._keys)
        self.scan(conn, upto)
        self.built = True

    def scan(self, conn: sqlite3.Connection, after: int) -> None:
        """Add the rows after position ``after``: the tail after the snapshot, or rows
        another process (or store object) appended since this writer's last commit. A long
        scan runs with a small page cache: it reads every page of those rows once, and
        the writer's cache would otherwise keep up to its whole size of them, pages no
        append needs again (so do the snapshot's blobs, read and written: ``build``,
        ``write_snapshot``)."""
        last = conn.execute("SELECT max(position) FROM events").fetchone()[0] or 0
        with _page_cache_limited(conn, last - after > SMALL_SCAN):
            cursor = conn.execute(_ROWS_AFTER, (after,))
            while rows := cursor.fetchmany(_SCAN_PAGE):
                ids, positions = zip(*rows)
                self.add(ids, positions)

    def add(self, ids: Sequence[bytes], positions: Sequence[int]) -> None:
        """Remember committed events (ids with their positions)."""
        if len(ids) >= max(MERGE_MIN, len(self._keys) // MERGE_FRACTION):  # a big scan goes straight to main
            self._keys, self._positions = _merged(self._keys, self._positions, index_keys(ids),
                                                  np.asarray(positions, np.int64))
            return
        self._recent.update(zip(ids, positions))
        if len(self._recent) > MERGE_MIN:
            self._merge_recent()

    def _merge_recent(self) -> None:
        """``recent`` into ``middle``, and ``middle`` into ``main`` once it outgrew 1/16 of it."""
        if self._recent:
            ids = list(self._recent)
            positions = np.fromiter(self._recent.values(), np.int64, len(ids))
            self._middle_keys, self._middle_positions = _merged(
                self._middle_keys, self._middle_positions, index_keys(ids), positions)
            self._recent = {}
        if len(self._middle_keys) > max(MERGE_MIN, len(self._keys) // MERGE_FRACTION):
            self._merge_middle()

    def _merge_middle(self) -> None:
        if len(self._middle_keys):
            self._keys, self._positions = _merged(self._keys, self._positions, self._middle_keys,
                                                  self._middle_positions)
            self._middle_keys, self._middle_positions = _EMPTY_KEYS, _EMPTY_POSITIONS

    # --- snapshot ---------------------------------------------------------------------

    def worth_saving(self) -> bool:
        """Whether the persisted snapshot misses more than ``SNAPSHOT_MIN_TAIL`` ids (a
        closing writer then saves it: ``SQLiteWriter.close``)."""
        return self.built and len(self) - self._snapshot_size > SNAPSHOT_MIN_TAIL

    def snapshot_due(self) -> bool:
        return self.built and len(self) - self._snapshot_size > max(SNAPSHOT_MIN_TAIL, self._snapshot_size // 4)

    def write_snapshot(self, conn: sqlite3.Connection, head: int) -> None:
        """Persist the index as of ``head`` (inside the caller's write transaction; the
        index must hold exactly the rows up to ``head``)."""
        self._merge_recent()
        self._merge_middle()
        keys, positions = self._keys.astype(_KEY, copy=False), self._positions.astype("<i8", copy=False)
        chunks = (slice(start, start + SNAPSHOT_CHUNK) for start in range(0, len(keys), SNAPSHOT_CHUNK))
        with _page_cache_limited(conn, len(keys) > SMALL_SCAN):  # pages written once: the WAL takes them
            conn.execute("DELETE FROM id_snapshot")
            conn.executemany(
                "INSERT INTO id_snapshot(chunk, upto_position, keys, positions) VALUES (?, ?, ?, ?)",
                ((n, head, keys[part].tobytes(), positions[part].tobytes()) for n, part in enumerate(chunks)),
            )
        self._snapshot_size = len(keys)

    def forget_snapshot_write(self) -> None:
        """The transaction that may have rewritten the snapshot rolled back: rewrite it at
        the next chance rather than trust a size that may not be on disk."""
        self._snapshot_size = 0

    # --- looking up -------------------------------------------------------------------

    def find(self, conn: sqlite3.Connection, ids: list[bytes], pending: IdPositions | None = None) -> IdPlaces:
        """The places of those of ``ids`` that are stored, confirmed on the full id.
        ``pending``: ids written earlier in the caller's transaction (not yet added)."""
        candidates: list[int] = []
        for exact in (self._recent, pending):
            if exact:
                candidates.extend(exact[event_id] for event_id in exact.keys() & ids)
        keys = index_keys(ids) if ids and (len(self._keys) or len(self._middle_keys)) else None
        for held_keys, held_positions in ((self._keys, self._positions), (self._middle_keys, self._middle_positions)):
            if keys is not None and len(held_keys):
                starts = np.searchsorted(held_keys, keys, side="left")
                ends = np.searchsorted(held_keys, keys, side="right")
                hits = np.flatnonzero(ends > starts)
                if hits.size:
                    candidates.extend(held_positions[_ranges(starts[hits], ends[hits])].tolist())
        if not candidates:
            return {}
        wanted = set(ids)
        rows = conn.execute(_ROWS_AT, (orjson.dumps(candidates),))
        return {event_id: (position, version) for event_id, position, version in rows if event_id in wanted}


@contextmanager
def _page_cache_limited(conn: sqlite3.Connection, limited: bool) -> Iterator[None]:
    """Run with the connection's page cache at ``SCAN_CACHE_KIB`` (if ``limited``), then
    set back: lowering it frees the pages beyond it, so they are not kept after."""
    if not limited:
        yield
        return
    size = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute(f"PRAGMA cache_size={-SCAN_CACHE_KIB}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size={size}")


def _merged(keys: np.ndarray, positions: np.ndarray, more_keys: np.ndarray,
            more_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``keys`` (and their ``positions``) with ``more`` added, in new arrays."""
    order = np.argsort(more_keys, kind="stable")
    more_keys, more_positions = more_keys[order], more_positions[order]
    at = np.searchsorted(keys, more_keys, side="right")
    if positions.dtype == _NARROW and len(more_positions) and more_positions.max() > _NARROW_MAX:
        positions = positions.astype(np.int64)  # a log past 4 billion events: wide from now on
    return np.insert(keys, at, more_keys), np.insert(positions, at, more_positions.astype(positions.dtype, copy=False))


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The indexes ``starts[0]..ends[0]-1, starts[1]..ends[1]-1, ...`` in one array."""
    counts = ends - starts
    offsets = np.cumsum(counts) - counts  # where each range begins in the output
    return np.arange(int(counts.sum())) - np.repeat(offsets, counts) + np.repeat(starts, counts)


def _read_snapshot(conn: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray] | None:
    """The snapshot's keys and positions, read a chunk at a time into arrays made once:
    at 10M events the index is 82 MiB, and joining the chunks then converting them
    held three copies of it at once. None if its keys are not 32-bit hashes (a snapshot
    written before them holds 8-byte prefixes, which cannot be turned into hashes)."""
    count, key_bytes = conn.execute(
        "SELECT coalesce(sum(length(positions)), 0) / 8, coalesce(sum(length(keys)), 0) FROM id_snapshot").fetchone()
    if key_bytes != count * _KEY.itemsize:
        log.info("the id index's snapshot holds keys of another kind: the index is built from the rows")
        return None
    highest = conn.execute("SELECT max(upto_position) FROM id_snapshot").fetchone()[0] or 0  # no position above it
    keys, positions = np.empty(count, _KEY), np.empty(count, _NARROW if highest <= _NARROW_MAX else np.int64)
    at = 0
    for chunk_keys, chunk_positions in conn.execute("SELECT keys, positions FROM id_snapshot ORDER BY chunk"):
        size = len(chunk_keys) // _KEY.itemsize
        keys[at:at + size] = np.frombuffer(chunk_keys, _KEY)
        positions[at:at + size] = np.frombuffer(chunk_positions, "<i8")
        at += size
    if at != count:
        raise RuntimeError(f"id_snapshot changed while read: {at} ids, {count} counted")
    return keys, positions
