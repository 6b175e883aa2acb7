"""The audit replay: rebuild the projections from the event store, at any point in time.

``replay(store, as_of=..., known_at=...)`` reads the log once, in global order, decodes
each event through the registry and folds it with ``projections.population.evolve`` -- the
very code the live processors and the view server run -- into a fresh ``Population``.

Two clocks select what is replayed, both inclusive:

- ``as_of`` keeps the events that *occurred* up to that moment (the emitters' clock), late
  arrivals included: "what happened up to the end of February, as far as we know now";
- ``known_at`` keeps the events the log had *recorded* up to that moment (the store's
  clock): "what could anyone have seen on 1 March". Late events are left out.

Together: ``as_of=2024-02-29, known_at=2024-03-01`` is what we knew on 1 March about
February. ``point_in_time`` parses both the same way for the CLI and the HTTP API.

"Now" of the views that measure ages (prospects, recency) is ``as_of`` when given, else
the newest ``occurred_at`` replayed (data time, as the live views use), never the wall
clock: a replay's documents depend on the log and the parameters only. With ``known_at``
alone the replay therefore equals what the live views showed at that moment.

The log is read up to the head it had when the replay started, so a replay is one
consistent cut even while events keep arriving. It is read in large pages of raw rows
(``events.raw.read_raw``: native on a ``RawReader`` such as the SQLite store, adapted
from ``read_all`` on any other), decoded by the registry's one decoder and folded by the
fold shell (``application.fold``). A ``RawReader``'s ``recorded_at`` never decreases along
the log, so there a ``known_at`` replay stops at the first later event; elsewhere every
event up to the head is read and the later ones are skipped.

``PointInTimeViews`` is the ``views_at`` hook of the read API and the CLI view commands:
replayed views cached by ``(as_of, known_at, head position)``.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from events.raw import RawReader, read_raw
from events.logged import LoggedEvent
from events.registry import REGISTRY, EventRegistry, InvalidEvent
from events.store import EventStore
from events.times import EPOCH, from_micros, to_micros
from projections import population as population_module
from projections.parameters import ViewParameterError, in_utc
from projections.population import Population

from application.collector import collector_paused
from application.fold import LogFold
from application.live_views import LiveViews

END_OF_DAY = timedelta(days=1, microseconds=-1)
DATE_HELP = (
    "RFC 3339 time with an offset (2024-03-01T12:00:00Z, 2024-03-01T13:00:00+01:00) or a date "
    "(2024-03-01 = the end of that day in UTC: every event of the day is included); inclusive"
)
PAGE_SIZE = 20_000
_NEVER = 2**63  # beyond any time in microseconds
UNDECODABLE_LISTED = 20

Progress = Callable[[int], None]
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def point_in_time(param: str, value: object) -> datetime | None:
    """An ``as_of``/``known_at`` moment as an aware UTC datetime (None stays None).

    Accepts an RFC 3339 time with an offset, or a date meaning the END of that day in
    UTC (``23:59:59.999999``, the store's resolution), so ``--as-of 2024-02-29`` keeps
    all of 29 February. A time without an offset is refused: an audit question must not
    depend on the machine's time zone. Raises ``ViewParameterError`` naming ``param``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ViewParameterError(param, "must be timezone-aware")
        return in_utc(param, value)
    if isinstance(value, date):
        return _end_of_day(value)
    if not isinstance(value, str):
        raise ViewParameterError(param, f"expected a date or time, got {type(value).__name__}")
    text = value.strip()
    if _DATE.fullmatch(text):
        try:
            return _end_of_day(date.fromisoformat(text))
        except ValueError:
            raise ViewParameterError(param, f"not a calendar date: {value!r}") from None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ViewParameterError(param, f"not an RFC 3339 time or a date: {value!r}") from None
    if parsed.tzinfo is None:
        raise ViewParameterError(param, f"a time needs an offset (Z or +hh:mm): {value!r}")
    return in_utc(param, parsed)


def _end_of_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + END_OF_DAY


@dataclass
class ReplayResult:
    """A replayed population and what the replay saw of the log."""

    population: Population
    as_of: datetime | None
    known_at: datetime | None
    head_position: int | None  # the log's head when the replay started: nothing after it was read
    events_read: int = 0  # events in the range: up to the head, recorded by known_at
    events_replayed: int = 0  # folded: events_read minus those after as_of and the undecodable
    after_as_of: int = 0  # in the range, but occurred after as_of
    after_known_at: int = 0  # up to the head, but recorded after known_at
    by_type: dict[str, int] = field(default_factory=dict)  # folded events per type
    first_position: int | None = None  # the range read
    last_position: int | None = None
    first_recorded_at: datetime | None = None
    last_recorded_at: datetime | None = None
    first_occurred_at: datetime | None = None  # of the folded events
    last_occurred_at: datetime | None = None
    head_hash: bytes | None = None  # the stored chain hash at last_position
    undecodable: int = 0
    undecodable_examples: list[dict[str, Any]] = field(default_factory=list)  # position, type, reason

    @property
    def now(self) -> datetime:
        """The "now" of the views: as_of, else data time (the newest occurred_at folded)."""
        if self.as_of is not None:
            return self.as_of
        return self.last_occurred_at if self.last_occurred_at is not None else EPOCH

    def live_views(self) -> LiveViews:
        """The replayed population behind the same view cache the API serves. Its views
        come from the definitions (``projections.views``), not the maintained aggregates:
        the audit recomputes, so that comparing it with the live views checks them."""
        now = self.now
        return LiveViews(population=self.population, clock=lambda: now, background=False, maintain_views=False)

    def note_undecodable(self, position: int, type_name: str, error: Exception) -> None:
        self.undecodable += 1
        if len(self.undecodable_examples) < UNDECODABLE_LISTED:
            reason = f"no stream row for stream id {error}" if isinstance(error, KeyError) else str(error)
            self.undecodable_examples.append({"position": position, "type": type_name, "reason": reason})


def replay(
    store: EventStore,
    *,
    as_of: datetime | str | None = None,
    known_at: datetime | str | None = None,
    registry: EventRegistry = REGISTRY,
    progress: Progress | None = None,
    until_position: int | None = None,
    page_size: int = PAGE_SIZE,
    freeze: bool = False,
) -> ReplayResult:
    """Fold the log up to its current head (or ``until_position``, inclusive, if that
    is earlier) into a fresh population; see the module docstring.

    Events that cannot be decoded here (e.g. a plugin type not installed) are skipped,
    counted and listed in the result, as the live feed does; nothing else is skipped.
    ``freeze`` (for short-lived processes such as the CLI) calls ``gc.freeze()`` at the
    end: the cyclic collector then never rescans the millions of objects of the replayed
    population (acyclic: reference counting still frees it when dropped), but it also
    stops collecting whatever else the process held at that moment."""
    as_of = point_in_time("as_of", as_of)
    known_at = point_in_time("known_at", known_at)
    head = store.head_position()
    if head is not None and until_position is not None:
        head = min(head, until_position)
    result = ReplayResult(population_module.initial_state(), as_of, known_at, head)
    if head is None or head < 0:
        return result
    # A replay builds millions of long-lived, acyclic objects: collections would rescan them all.
    with collector_paused(freeze=freeze):
        _replay(store, result, registry, progress, page_size)
    return result


def _replay(store: EventStore, result: ReplayResult, registry: EventRegistry, progress: Progress | None,
            page_size: int) -> None:
    """One pass over raw pages: cut at the head (and at known_at where ``recorded_at`` is
    in log order), times compared as integers, one datetime per append. It runs ~7 µs
    per event: every step counts."""
    head = result.head_position
    as_of_us = _NEVER if result.as_of is None else to_micros(result.as_of)
    known_us = _NEVER if result.known_at is None else to_micros(result.known_at)
    in_order = isinstance(store, RawReader)  # recorded_at never decreases, positions are dense
    cut_us = known_us if in_order else _NEVER
    folded = LogFold(result.population)
    by_type: dict[str, int] = {}
    read = after_known_at = 0
    first = last = None  # rows
    for rows, names in read_raw(store, 0, page_size=page_size, columns=_REPLAY_COLUMNS):
        end = _cut(rows, head, cut_us)  # type: ignore[arg-type]
        if end < len(rows):
            rows = rows[:end]
        page_read = len(rows)
        if known_us != cut_us:  # a log out of recorded_at order: skip the later events one by one
            kept = [row for row in rows if row[5] <= known_us]
            after_known_at += len(rows) - len(kept)
            rows = kept
        if rows:
            read += len(rows)
            first = first or rows[0]
            last = rows[-1]
        folded.fold(_decoded(rows, names, registry, as_of_us, result, by_type))
        if progress is not None:
            progress(page_read)
        if end < page_size:
            break
    result.population = folded.population
    result.events_read, result.by_type = read, by_type
    result.events_replayed = sum(by_type.values())
    result.first_occurred_at, result.last_occurred_at = folded.oldest, folded.data_time
    if first is not None and last is not None:
        result.first_position, result.first_recorded_at = first[0], from_micros(first[5])
        result.last_position, result.last_recorded_at = last[0], from_micros(last[5])
        result.head_hash = _stored_hash(store, last[0])
    if result.known_at is not None and in_order:  # dense positions: the rest up to the head
        after_known_at = head - (last[0] if last is not None else 0)  # type: ignore[operator]
    result.after_known_at = after_known_at


def _decoded(rows: list[tuple], names: dict[int, str], registry: EventRegistry, as_of_us: int,
             result: ReplayResult, by_type: dict[str, int]) -> Iterator[LoggedEvent]:
    """The rows of one page that occurred by as_of, decoded (the undecodable are noted)."""
    decode = registry.decode_logged
    recorded_us, recorded_at = None, EPOCH
    for position, stream_id, type_name, schema_version, occurred, recorded, data in rows:
        if occurred > as_of_us:
            result.after_as_of += 1
            continue
        if recorded != recorded_us:  # one append shares one recorded_at
            recorded_us, recorded_at = recorded, from_micros(recorded)
        try:
            logged = decode(type_name, schema_version, data, position, recorded_at, names[stream_id])
        except (InvalidEvent, ValueError, KeyError) as error:
            result.note_undecodable(position, type_name, error)
            continue
        by_type[type_name] = by_type.get(type_name, 0) + 1
        yield logged


def _cut(rows: list[tuple], head: int, known_us: int) -> int:
    """How many rows of a page are at or before the head and recorded by known_at."""
    last = rows[-1]
    if last[0] <= head and last[5] <= known_us:
        return len(rows)
    low, high = 0, len(rows)
    while low < high:
        middle = (low + high) // 2
        row = rows[middle]
        if row[0] <= head and row[5] <= known_us:
            low = middle + 1
        else:
            high = middle
    return low


_REPLAY_COLUMNS = ("position", "stream_id", "type", "schema_version", "occurred_at", "recorded_at", "data")


def _stored_hash(store: EventStore, position: int) -> bytes | None:
    found = next(iter(store.read_all(position, limit=1)), None)
    return found.hash if found is not None and found.position == position else None


# --- point-in-time views for the API and the CLI ---------------------------------------------


def replay_views(
    store: EventStore,
    *,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
    registry: EventRegistry = REGISTRY,
    progress: Progress | None = None,
    freeze: bool = False,
) -> LiveViews:
    """The views at a point in time: a replay behind a ``LiveViews`` (no background thread)."""
    return replay(store, as_of=as_of, known_at=known_at, registry=registry, progress=progress,
                  freeze=freeze).live_views()


class PointInTimeViews:
    """``views_at(as_of, known_at) -> LiveViews``: replayed views, cached.

    The cache key is ``(as_of, known_at, head position)``: a new event makes the next
    request replay again (a late event can change any point in time); the
    ``max_entries`` most recently used replays are kept (each holds a whole population).
    Concurrent requests for the same key share one replay."""

    def __init__(self, store: EventStore, *, registry: EventRegistry = REGISTRY, max_entries: int = 2):
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.store = store
        self.registry = registry
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[Any, ...], LiveViews] = OrderedDict()
        self._inflight: dict[tuple[Any, ...], threading.Event] = {}
        self._lock = threading.Lock()
        self.replays = 0

    def __call__(self, as_of: datetime | None, known_at: datetime | None) -> LiveViews:
        as_of = point_in_time("as_of", as_of)
        known_at = point_in_time("known_at", known_at)
        key = (as_of, known_at, self.store.head_position())
        while True:
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    return cached
                running = self._inflight.get(key)
                if running is None:
                    running = self._inflight[key] = threading.Event()
                    break
            running.wait()  # another request is replaying this key; then read the cache
        try:
            views = replay_views(self.store, as_of=as_of, known_at=known_at, registry=self.registry)
            with self._lock:
                self.replays += 1
                self._cache[key] = views
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
            return views
        finally:
            with self._lock:
                del self._inflight[key]
            running.set()
