"""Every identity's journey, kept in a SQLite file instead of the process's memory.

The live views need an identity's journey only when its group is summarised again
(``projections.group_cache``), which happens only for the groups that changed. So the
population's journeys can live on disk: ``SpilledJourneys`` is the mapping a
``Population`` holds them in. The ``HELD`` journeys last used stay decoded in memory
(a fold mutates them in place, the next refresh reads them, and a journey the feed delivers
many times in a row is written once); past that the least recently used are let go, those
changed written in one transaction as ``IdentityJourney.to_bytes``. Held in memory per
identity: nothing.

The worker's journey processors keep each partition's journeys the same way
(``streams.journey_state``, ``keeps_identity=False``: they need no identity facts apart),
restoring a partition from its changelog straight into the file (``put_encoded``).

The file is this process's cache of the journeys its feed (or changelog) delivered, not a
log (they are delivered again at start): it is made in the given folder under a name of its
own and unlinked at once, so two processes never share one and none is left behind, even
after a SIGKILL. A clean stop of the live views copies it (``save_copy``) beside their saved
state (``application.view_state``), and the next process ``adopt``s that copy: moved to a name
of its own and unlinked the same way. Not thread-safe: the live views call it under their
lock, the worker from its one processing task.
"""

from __future__ import annotations

import itertools
import marshal
import os
import pickle
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from projections.aggregates.base import KeptContributions
from projections.journey import IdentityJourney, LinkFact, MergeFact

if TYPE_CHECKING:
    from application.settings import Settings

HELD = 10_000  # journeys kept decoded, the most recently used
WRITE_BATCH = 2_000  # journeys let go at once when more are held (those changed are written in one transaction)
_NUMBERS = itertools.count()


def spill_folder(data: Path) -> Path:
    """Where a process whose data folder is ``data`` keeps its journeys' file."""
    return Path(data) / "views"


def views_journeys_folder(settings: "Settings") -> Path | None:
    """Where the API's live views keep their journeys: a file in the data folder with
    ``TOUCHPOINTS_VIEWS_JOURNEYS_ON_DISK`` on, else nowhere (in memory: faster, larger)."""
    return spill_folder(settings.data) if settings.views_journeys_on_disk else None


class SpilledJourneys(MutableMapping[str, IdentityJourney]):
    """Identity key -> journey, in a file of its own in ``folder``."""

    def __init__(
        self, folder: Path, *, held: int | None = None, write_batch: int | None = None, cache_kib: int = 16_384,
        keeps_identity: bool = True, adopt: Path | None = None,
    ):
        """``keeps_identity``: also store each journey's links and merges apart, for
        ``identity_facts`` (the population's identity graph asks; the worker does not).
        ``adopt``: start from the journeys of a file ``save_copy`` wrote (it is moved into
        this mapping's own name, then unlinked like a new one)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"journeys-{os.getpid()}-{next(_NUMBERS)}.sqlite"
        self.held = HELD if held is None else held
        self.write_batch = WRITE_BATCH if write_batch is None else write_batch
        self.keeps_identity = keeps_identity
        if adopt is not None:
            os.replace(adopt, path)  # ours alone from now on: the saved state it belonged to is used up
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")  # a cache rebuilt at every start: no journal, no fsync
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(f"PRAGMA cache_size=-{cache_kib}")
        if adopt is None:
            self._db.execute("DROP TABLE IF EXISTS journeys")  # (creates the file)
        path.unlink()  # open, it stays usable; closed (or killed), it is gone
        if adopt is None:
            # identity: the journey's links and merges alone, as a journey (NULL: none), what replacing it
            # must take out of the identity graph
            self._db.execute("CREATE TABLE journeys (key TEXT PRIMARY KEY, journey BLOB NOT NULL, identity BLOB)")
        self._held: OrderedDict[str, IdentityJourney] = OrderedDict()  # decoded, last used last
        self._unwritten: set[str] = set()  # held journeys changed since they were written (or never written)
        self._fresh: set[str] = set()  # unwritten keys the file has no row of
        self._looked_up: tuple[object, tuple | None] = (None, None)  # the last key's row: asked twice in a row
        self._stored = 0 if adopt is None else self._db.execute("SELECT count(*) FROM journeys").fetchone()[0]
        self._contributions: SpilledContributions | None = None

    # --- the mapping --------------------------------------------------------------------

    def __getitem__(self, key: str) -> IdentityJourney:
        journey = self.get(key)
        if journey is None:
            raise KeyError(key)
        return journey

    def get(self, key: str, default: IdentityJourney | None = None) -> IdentityJourney | None:  # type: ignore[override]
        held = self._held
        journey = held.get(key)
        if journey is not None:
            held.move_to_end(key)
            return journey
        row = self._db.execute("SELECT journey FROM journeys WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        journey = held[key] = IdentityJourney.from_bytes(row[0])
        self._let_go_if_full()
        return journey

    def __setitem__(self, key: str, journey: IdentityJourney) -> None:
        """Hold ``journey`` as ``key``'s (also to say a journey ``get`` returned was changed in place)."""
        held = self._held
        if key not in self._unwritten:
            if key not in held and self._row(key) is None:
                self._fresh.add(key)
            self._unwritten.add(key)
        held[key] = journey
        held.move_to_end(key)
        self._let_go_if_full()

    def __delitem__(self, key: str) -> None:
        raise TypeError("journeys are replaced, never removed (an empty journey forgets an identity)")

    def __contains__(self, key: object) -> bool:
        return key in self._held or self._row(key) is not None

    def __len__(self) -> int:
        return self._stored + len(self._fresh)

    def __iter__(self) -> Iterator[str]:
        """The keys as of the call (reading journeys meanwhile may write some)."""
        keys = [key for (key,) in self._db.execute("SELECT key FROM journeys ORDER BY rowid")]
        keys.extend(self._fresh)
        return iter(keys)

    # --- what the population asks beside the mapping -----------------------------------------

    def identity_facts(self, key: str) -> tuple[Sequence[LinkFact], Sequence[MergeFact]]:
        """The links and merges of the journey held for ``key`` (none if none is held)."""
        journey = self._held.get(key)
        if journey is None:
            row = self._row(key)
            if row is None or row[0] is None:
                return (), ()
            journey = IdentityJourney.from_bytes(row[0])
        return journey.links, journey.merges

    def put_encoded(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Store journeys already encoded (``IdentityJourney.to_bytes``, read back from a
        changelog) as they are; how many. They replace what is held. Decoded only to take
        their identity facts apart, when ``keeps_identity``."""
        rows = [(key, encoded, _identity_of(IdentityJourney.from_bytes(encoded)) if self.keeps_identity else None)
                for key, encoded in items]
        if not rows:
            return 0
        db = self._db
        with _transaction(db):
            db.executemany("INSERT OR REPLACE INTO journeys (key, journey, identity) VALUES (?, ?, ?)", rows)
        for key, _, _ in rows:
            self._held.pop(key, None)
            self._unwritten.discard(key)
            self._fresh.discard(key)
        self._stored = db.execute("SELECT count(*) FROM journeys").fetchone()[0]
        self._looked_up = (None, None)
        return len(rows)

    def encoded_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every journey as ``(key, IdentityJourney.to_bytes())``, as the file holds them
        (changed ones written first): for publishing them all again without decoding."""
        self.flush()
        for key, journey in self._db.execute("SELECT key, journey FROM journeys ORDER BY rowid").fetchall():
            yield key.encode(), journey

    def flush(self) -> int:
        """Write every changed journey (and contribution row) to the file (they stay held);
        how many journeys."""
        if self._contributions is not None:
            self._contributions.flush()
        return self._write(list(self._unwritten))

    def contributions(self) -> "SpilledContributions":
        """The maintained aggregates' kept contributions, in this file beside the journeys
        (so ``save_copy`` and ``adopt`` carry both): one store a file."""
        if self._contributions is None:
            self._contributions = SpilledContributions(self._db)
        return self._contributions

    def save_copy(self, path: Path) -> None:
        """Write every journey held to a durable file at ``path`` (replaced whole, or not
        at all): what ``adopt`` starts from."""
        self.flush()
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        copy = sqlite3.connect(partial)
        try:
            self._db.backup(copy, pages=16_384)
        finally:
            copy.close()
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, path)

    def close(self) -> None:
        self._db.close()

    def _let_go_if_full(self) -> None:
        _let_go_oldest(self._held, self.held, self.write_batch, self._unwritten, self._write)

    def _write(self, keys: list[str], journeys: Mapping[str, IdentityJourney] | None = None) -> int:
        if not keys:
            return 0
        source = self._held if journeys is None else journeys
        db = self._db
        with _transaction(db):
            db.executemany(
                "INSERT OR REPLACE INTO journeys (key, journey, identity) VALUES (?, ?, ?)",
                [(key, (journey := source[key]).to_bytes(), _identity_of(journey) if self.keeps_identity else None)
                 for key in keys],
            )
        fresh = self._fresh
        for key in keys:
            self._unwritten.discard(key)
            if key in fresh:
                fresh.discard(key)
                self._stored += 1
        self._looked_up = (None, None)
        return len(keys)

    def _row(self, key: object) -> tuple | None:
        """The file's ``(identity,)`` of ``key`` (None: no row): asked twice in a row when a
        journey is replaced, read once."""
        asked, row = self._looked_up
        if asked != key:
            row = self._db.execute("SELECT identity FROM journeys WHERE key = ?", (key,)).fetchone()
            self._looked_up = (key, row)
        return row


class SpilledContributions(KeptContributions):
    """``MaintainedViews``' kept contributions (a row a slot, ``projections.aggregates``)
    in a table of the views' journeys file. A row is read only when its group changes, so
    at a million groups the rows (~350 bytes a group in memory: tuples, datetimes, named
    tuples) stay on disk; the ``HELD`` rows last used stay decoded, changed ones are written
    ``WRITE_BATCH`` a transaction when let go. Rows come as builtins where the aggregates
    can make them so (``plain``), encoded by ``marshal`` (a row: ~2 µs to write and ~1 to
    read, where ``pickle`` took ~7 and ~4.5), and by ``pickle`` when one still holds
    something else (a data-quality finding's named tuples)."""

    plain = True
    __slots__ = ("_db", "_held", "_unwritten", "_end", "held", "write_batch")

    def __init__(self, db: sqlite3.Connection, *, held: int | None = None, write_batch: int | None = None):
        self._db = db
        self.held = HELD if held is None else held
        self.write_batch = WRITE_BATCH if write_batch is None else write_batch
        db.execute("CREATE TABLE IF NOT EXISTS contributions (slot INTEGER PRIMARY KEY, row BLOB NOT NULL)")
        self._held: OrderedDict[int, tuple | None] = OrderedDict()  # decoded (None: no row), last used last
        self._unwritten: set[int] = set()
        # no row at or past it: a new group's slot (most of them in a catch-up) is not looked up
        self._end = (db.execute("SELECT max(slot) FROM contributions").fetchone()[0] or -1) + 1

    def get(self, slot: int) -> tuple | None:
        held = self._held
        if slot in held:
            held.move_to_end(slot)
            return held[slot]
        if slot >= self._end:
            return None
        found = self._db.execute("SELECT row FROM contributions WHERE slot = ?", (slot,)).fetchone()
        row = held[slot] = None if found is None else _decoded(found[0])
        self._let_go_if_full()
        return row

    def put(self, slot: int, row: tuple | None) -> None:
        held = self._held
        held[slot] = row
        held.move_to_end(slot)
        self._unwritten.add(slot)
        self._let_go_if_full()

    def flush(self) -> None:
        self._write(list(self._unwritten), self._held)

    def _let_go_if_full(self) -> None:
        _let_go_oldest(self._held, self.held, self.write_batch, self._unwritten, self._write)

    def _write(self, slots: list[int], rows: Mapping[int, tuple | None]) -> None:
        if not slots:
            return
        db = self._db
        with _transaction(db):
            db.executemany("INSERT OR REPLACE INTO contributions (slot, row) VALUES (?, ?)",
                           [(slot, _encoded(row)) for slot in slots if (row := rows[slot]) is not None])
            db.executemany("DELETE FROM contributions WHERE slot = ?", [(slot,) for slot in slots if rows[slot] is None])
        self._unwritten.difference_update(slots)
        self._end = max(self._end, max(slots) + 1)


def _let_go_oldest(held: OrderedDict, keep: int, batch: int, unwritten: set, write: Callable[[list, dict], object]) -> None:
    """Past ``keep + batch`` entries ``held``, let the ``batch`` least recently used go, written
    (``write(keys, going)``) if they are ``unwritten``."""
    if len(held) <= keep + batch:
        return
    going = dict(held.popitem(last=False) for _ in range(batch))
    write([key for key in going if key in unwritten], going)


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One transaction on a connection in autocommit mode: committed whole, or rolled back."""
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _encoded(row: tuple) -> bytes:
    try:
        return b"m" + marshal.dumps(row)
    except ValueError:  # something marshal does not write: a named tuple, a datetime
        return b"p" + pickle.dumps(row, pickle.HIGHEST_PROTOCOL)


def _decoded(data: bytes) -> tuple:
    return marshal.loads(data[1:]) if data[:1] == b"m" else pickle.loads(data[1:])


def saved_encoded_items(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """The journeys of a file ``save_copy`` wrote, as ``encoded_items`` gives them, read
    without taking the file (it stays as it is)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for key, journey in db.execute("SELECT key, journey FROM journeys ORDER BY rowid"):
            yield key.encode(), journey
    finally:
        db.close()


def saved_journeys(path: Path) -> Iterator[tuple[str, IdentityJourney]]:
    """The journeys of a file ``save_copy`` wrote, decoded, read without taking the file."""
    for key, journey in saved_encoded_items(path):
        yield key.decode(), IdentityJourney.from_bytes(journey)


def _identity_of(journey: IdentityJourney) -> bytes | None:
    """A journey of ``journey``'s links and merges alone (None: it has none)."""
    if not journey.links and not journey.merges:
        return None
    facts = IdentityJourney(journey.key)
    facts.links, facts.merges = journey.links, journey.merges
    return facts.to_bytes()
