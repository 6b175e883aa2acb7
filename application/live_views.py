"""The live views the API serves: one ``Population`` plus a cache of view documents.

``LiveViews`` owns a ``projections.population.Population`` and keeps it current through
one of two feeds: ``apply_events`` (decoded log events, folded by the fold shell
``application.fold``: ``application.store_feed`` and the CLI) or ``apply_journeys``
(per-identity journeys from the Kafka processors: ``streams.view_feed``). Every change
bumps ``version``.

View documents come from ``projections.views`` and are cached per (view, parameters):

- the *precomputed* views (every view with its default parameters, every attribution
  model) are recomputed by a background thread after changes, coalesced: a burst of
  events costs one refresh (``refresh_delay`` after the first change), and readers keep
  getting the previous document until the new one is ready, so they never wait on a
  recompute;
- the default documents of the views ``projections.aggregates`` maintains are rendered
  from those aggregates, which the population's group cache updates group by group: the
  work per refresh follows the groups that changed, not the size of the population (the
  definitions in ``projections.views`` remain what replay and the audit compute; tests
  hold every aggregate to its definition byte for byte);
- any other parameters are computed on first request and cached; when the data has
  changed since, a cached document younger than ``max_stale_seconds`` is served as is,
  an older one is recomputed by the first reader while concurrent readers of the same
  key get the previous document (single flight).

After a restart (``documents_path`` given, ``restore_documents`` called before the
feed starts), the default documents saved by the previous process
(``application.view_documents``) are served at once, each with the position it reflects,
while the population is rebuilt; queries those documents do not answer raise
``ViewsNotReady`` (the API answers 503 with Retry-After). The live documents replace
them only once the shell's ``ready`` signal held (the feed applied everything up to
where it had to read) before a refresh whose documents all reflect at least the
restored position: a reader never sees older views than before the restart, nor a
half-loaded population. Documents of another ``snapshot_version`` are served the same
way until the rebuilt views catch up.

"Now" for the views that need it (prospects' age, recency) is *data time*: the latest
``occurred_at`` the views have seen, unless a clock is given or a request passes
``now``. Data time keeps the API, the CLI and an audit replay of the same log equal,
and it is never behind a live log by more than the time since its newest event.

With ``journeys_folder`` (what ``touchpoints up`` and ``serve`` give: the data folder's
``views/``), the population's journeys live in a SQLite file there and its group cache keeps
only the recent summaries (``application.journey_spill``): the views' memory per customer is
then the identity graph and the maintained aggregates.

The population is mutated in place by its fold, so folds and view computations take
one lock; cached documents are immutable and read without it.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from events.logged import LoggedEvent
from events.times import EPOCH
from projections import journey as journey_module
from projections import population as population_module
from projections import views as views_module
from projections.aggregates import MaintainedViews
from projections.attribution import MODELS
from projections.journey import IdentityJourney
from projections.parameters import ViewParameterError

from application import exports, view_documents, view_state
from application.fold import LogFold, journey_extent
from application.journey_spill import SpilledJourneys
from application.refresh_times import RefreshTimes
from application.collector import collector_paused, freeze_loaded_state, settle_long_lived_state

Clock = Callable[[], datetime]
SNAPSHOT_FORMAT = 1
PROGRESS_SECONDS = 10.0  # how often the log says how far the live views came while restored ones are served

log = logging.getLogger(__name__)


class UnknownView(KeyError):
    """No view of that name."""


class ViewsNotReady(Exception):
    """The live population is still being rebuilt after a restart: only the restored
    default documents can be served yet."""

    retry_after = 2  # seconds

    def __init__(self, what: str, restored_position: int | None, identities: int):
        self.restored_position = restored_position
        super().__init__(
            f"{what} needs the live views, which are still loading after a restart ({identities:,} identities "
            f"so far); the default documents are served as restored at position {restored_position}: retry shortly"
        )


@dataclass(frozen=True)
class ViewSpec:
    """One view of ``projections.views``: its function and its parameters."""

    name: str
    compute: Callable[..., dict[str, Any]]
    defaults: Mapping[str, Any]  # every parameter but ``now``, with its default (required: absent)
    needs_now: bool
    rows: str  # the key of the list CSV exports
    precomputed: tuple[Mapping[str, Any], ...]  # parameter sets kept warm by the refresher

    def key(self, params: Mapping[str, Any]) -> "ViewKey":
        unknown = sorted(set(params) - set(self.defaults) - {"now"})
        if unknown:
            raise ViewParameterError(unknown[0], f"not a parameter of the {self.name} view")
        merged = {**self.defaults, **{k: v for k, v in params.items() if v is not None}}
        if not self.needs_now:
            merged.pop("now", None)
        return (self.name, tuple(sorted(merged.items())))


ViewKey = tuple[str, tuple[tuple[str, Any], ...]]


def _spec(name: str, function: Callable[..., dict[str, Any]], rows: str, *precomputed: Mapping[str, Any]) -> ViewSpec:
    parameters = inspect.signature(function).parameters.values()
    keyword = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    defaults = {p.name: p.default for p in keyword if p.name != "now" and p.default is not inspect.Parameter.empty}
    for p in keyword:
        if p.name != "now" and p.default is inspect.Parameter.empty:
            defaults.setdefault(p.name, None)
    needs_now = any(p.name == "now" for p in keyword)
    return ViewSpec(name, function, defaults, needs_now, rows, precomputed or ({},))


VIEW_SPECS: dict[str, ViewSpec] = {
    spec.name: spec
    for spec in (
        _spec("attribution", views_module.attribution_view, "rows", *({"model": m} for m in MODELS)),
        _spec("first_contact", views_module.first_contact_view, "rows", {}, {"group_by": "campaign"}),
        _spec("conversion_time", views_module.conversion_time_view, "rows"),
        _spec("paths", views_module.paths_view, "rows"),
        _spec("top_customers", views_module.top_customers_view, "rows"),
        _spec("prospects", views_module.prospects_view, "rows"),
        _spec("funnel", views_module.funnel_view, "stages"),
        _spec("data_quality", views_module.data_quality_view, ""),
    )
}


DOCUMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "funnel": ("funnel", {}),
    "first_contact_by_channel": ("first_contact", {"group_by": "channel"}),
    "first_contact_by_campaign": ("first_contact", {"group_by": "campaign"}),
    "conversion_time": ("conversion_time", {}),
    **{f"attribution_{model}": ("attribution", {"model": model}) for model in MODELS},
    "paths": ("paths", {}),
    "top_customers": ("top_customers", {}),
    "prospects": ("prospects", {}),
    "data_quality": ("data_quality", {}),
}
"""Each document of ``projections.views.all_views``: its view and parameters here."""


@dataclass
class CachedView:
    """One computed view document, with its encodings made once on first use."""

    key: ViewKey
    version: int  # the LiveViews version it was computed at
    computed_at: float  # time.monotonic()
    compute_seconds: float
    document: dict[str, Any]
    position: int | None = None  # the log position the document reflects (the fold's, when computed)
    _json: bytes | None = field(default=None, repr=False)
    _csv: str | None = field(default=None, repr=False)

    def json_bytes(self) -> bytes:
        if self._json is None:
            self._json = orjson.dumps(self.document, option=orjson.OPT_SERIALIZE_NUMPY)
        return self._json

    def csv_text(self) -> str:
        if self._csv is None:
            self._csv = exports.to_csv(self.document, preferred_rows=VIEW_SPECS[self.key[0]].rows)
        return self._csv


def _not_newer(position: int | None, held: IdentityJourney | None) -> bool:
    """A journey reflecting log position ``position`` (its extent's) reflects no higher one
    than ``held``: folded from the same identity's events in log order, it then holds nothing
    ``held`` lacks (an event that leaves no fact, e.g. a consent older than the one kept,
    changes no view)."""
    if held is None:
        return False
    held_position = journey_extent(held)[0]
    return held_position is not None and (position is None or position <= held_position)


def _before(position: int | None, other: int | None) -> bool:
    """``position`` is lower than ``other`` (None: nothing folded, before any position)."""
    return other is not None and (position is None or position < other)


class LiveViews:
    """A thread-safe holder of the population the API serves, and its view cache."""

    def __init__(
        self,
        *,
        population: Any = None,
        clock: Clock | None = None,
        refresh_delay: float = 0.2,
        max_stale_seconds: float = 0.2,
        cache_size: int = 256,
        background: bool = True,
        maintain_views: bool = True,
        documents_path: Path | None = None,
        save_interval: float = 5.0,
        journeys_folder: Path | None = None,
        contributions_on_disk: bool = True,
        state_folder: Path | None = None,
    ):
        """``journeys_folder``: keep the journeys in a SQLite file there
        (``application.journey_spill``) rather than in memory; only with no ``population`` given;
        ``contributions_on_disk``: and the maintained views' kept contributions beside them.
        ``state_folder``: where ``save_state`` writes the whole state and ``load_state`` takes
        it up (``application.view_state``)."""
        self._journeys_folder = journeys_folder
        self._contributions_in_file = journeys_folder is not None and contributions_on_disk
        self._state_folder = state_folder
        self._newer_only = False  # once a feed reads its topic again from the beginning (newer_journeys_only)
        if journeys_folder is not None:
            if population is not None:
                raise ValueError("journeys_folder: only for a population these live views create")
            population = population_module.Population(SpilledJourneys(journeys_folder))
        self._log = LogFold() if population is None else LogFold(population)  # guarded by _lock
        if maintain_views:
            journeys = self._log.population.journeys  # in a file: the kept contributions may go beside them
            kept = journeys.contributions() if self._contributions_in_file else None
            self._log.population.summaries.maintain(MaintainedViews.default(kept))
        self._clock = clock
        self.refresh_delay = refresh_delay
        self.max_stale_seconds = max_stale_seconds
        self.cache_size = cache_size
        self._lock = threading.RLock()  # the population and its fold
        self._changed = threading.Condition()
        self._cache: dict[ViewKey, CachedView] = {}
        self._on_demand: OrderedDict[ViewKey, None] = OrderedDict()  # LRU of non-precomputed keys
        self._cache_lock = threading.Lock()
        self._inflight: dict[ViewKey, threading.Event] = {}
        self._precomputed: list[ViewKey] = [
            spec.key(params) for spec in VIEW_SPECS.values() for params in spec.precomputed
        ]
        self._precomputed_set = frozenset(self._precomputed)
        self._version = 0
        self._counts = {"events_applied": 0, "journeys_applied": 0, "batches": 0, "refreshes": 0, "computes": 0}
        self._last_refresh_seconds = 0.0
        self._refresh_times = RefreshTimes()
        self._refreshed_version = -1
        self._background = background
        self._refresher: threading.Thread | None = None
        self._closed = threading.Event()
        self._documents_path = documents_path  # where the default documents are saved (None: nowhere)
        self.save_interval = save_interval
        self._saved_at = 0.0  # time.monotonic() of the last save
        self._unsaved = False  # a refresh made documents the file does not hold yet
        self._save_lock = threading.Lock()  # the refresher and close() may both save
        self._restored: dict[ViewKey, CachedView] | None = None  # served until the live views catch up
        self._restored_from: view_documents.SavedDocuments | None = None
        self._restored_ready: Callable[[], bool] = lambda: True
        self._restored_since = 0.0
        self._progress_logged = 0.0  # time.monotonic() of the last progress line while restored

    # --- state ---------------------------------------------------------------------

    @property
    def position(self) -> int | None:
        """The highest log position folded in (a watermark with ``apply_events``)."""
        return self._log.position

    @property
    def documents_position(self) -> int | None:
        """The log position a reader of the default views gets: the lowest position the
        precomputed documents reflect. While the background refresher recomputes them,
        readers keep the previous documents, so this trails ``position``; without the
        refresher (or before a document was computed) a reader's document is computed
        from the fold, at ``position``."""
        if self._restored_from is not None:
            return self._restored_from.position
        position = self._log.position
        if self._refresher is None:
            return position
        for key in self._precomputed:
            entry = self._cache.get(key)
            if entry is not None and _before(entry.position, position):
                position = entry.position
        return position

    @property
    def version(self) -> int:
        return self._version

    @property
    def documents_current(self) -> bool:
        """The precomputed documents were rendered from everything applied so far: no change
        waits for the refresher (always so without one: a reader's document is computed)."""
        return self._refresher is None or self._refreshed_version == self._version

    @property
    def population(self) -> Any:
        """The live population. Hold ``locked()`` while reading it from another thread."""
        return self._log.population

    def locked(self) -> threading.RLock:
        return self._lock

    def now(self) -> datetime:
        """The "now" of views that need one: the clock if given, else data time."""
        if self._clock is not None:
            return self._clock()
        return self._log.data_time if self._log.data_time is not None else EPOCH

    # --- feeding ---------------------------------------------------------------------

    def apply_events(self, logged_events: Sequence[LoggedEvent], *, through_position: int | None = None) -> int:
        """Fold decoded log events (in log order) through ``application.fold``; returns
        how many were given.

        ``through_position`` moves ``position`` past events the caller skipped
        (e.g. undecodable ones) so a feed does not read them again."""
        if not logged_events and through_position is None:
            return 0
        with self._lock:
            self._log.fold(logged_events, through_position=through_position)
            self._counts["events_applied"] += len(logged_events)
            self._counts["batches"] += 1
            self._maintain()
            self._bump()
        settle_long_lived_state()  # the population lives on: keep it out of full collections
        return len(logged_events)

    def apply_journeys(self, items: Iterable[tuple[str, IdentityJourney | None]]) -> int:
        """Replace identities' journeys (``None``: the identity is gone, e.g. a tombstone
        on a compacted topic); returns how many were applied. ``position`` becomes the
        highest log position any applied journey reflects (journeys arrive from several
        partitions, so it is not a watermark here)."""
        count = 0
        with self._lock:
            folded = self._log
            newer_only = self._newer_only
            for key, journey in items:
                if journey is None:  # forget the identity: an empty journey drops its facts and links
                    journey, extent = IdentityJourney(key), (None, None)
                else:
                    extent = journey_extent(journey)
                    if newer_only and _not_newer(extent[0], folded.population.journeys.get(key)):
                        continue
                folded.population = population_module.apply_journey(folded.population, key, journey)
                folded.reach(*extent)
                count += 1
            if count:
                self._counts["journeys_applied"] += count
                self._counts["batches"] += 1
                self._maintain()
                self._bump()
        settle_long_lived_state()  # the population lives on: keep it out of full collections
        return count

    def _maintain(self) -> None:
        """With a refresher (the caller holds ``_lock``): bring the group summaries and the
        maintained aggregates up to the batch just applied, in the feed's thread, so a
        refresh only renders documents (~20 ms at a million customers) and holds the lock
        that briefly. Maintained in the refresh instead, that work (~0.3-0.5 s a refresh
        at 5,000 events/s there) kept the feed waiting and the documents a refresh behind."""
        if self._background and not self._closed.is_set():
            with collector_paused():  # summarising many groups allocates no cycles
                self._log.population.summaries.refresh()

    def _bump(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()
        if self._background and self._refresher is None and not self._closed.is_set():
            self._start_refresher()

    def wait_for_change(self, timeout: float) -> bool:
        """Block until ``version`` changes or ``timeout`` passes; True if it changed."""
        with self._changed:
            seen = self._version
            return self._changed.wait_for(lambda: self._version != seen, timeout)

    # --- reading views -----------------------------------------------------------------

    def view(self, name: str, **params: Any) -> CachedView:
        """The document of view ``name`` with ``params`` (``None`` = default), cached.

        Raises ``UnknownView``, or ``ViewParameterError`` (a ``ValueError``) naming a
        bad parameter: one the view does not take, or a value it refuses."""
        key = self._key(name, params)
        entry = self._servable(key)
        return entry if entry is not None else self._compute_once(key)

    def peek(self, name: str, **params: Any) -> CachedView | None:
        """The cached document ``view`` would answer without computing, else None."""
        return self._servable(self._key(name, params))

    def _key(self, name: str, params: Mapping[str, Any]) -> ViewKey:
        spec = VIEW_SPECS.get(name)
        if spec is None:
            raise UnknownView(name)
        return spec.key(params)

    def _servable(self, key: ViewKey) -> CachedView | None:
        restored = self._restored
        if restored is not None:
            entry = restored.get(key)
            if entry is None:
                raise self._not_ready(f"the {key[0]} view with these parameters")
            return entry
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry.version == self._version:
            return entry
        if key in self._precomputed_set and self._refresher is not None:
            return entry  # the refresher brings it up to date
        if key in self._inflight or time.monotonic() - entry.computed_at < self.max_stale_seconds:
            return entry
        return None

    def document(self, name: str, **params: Any) -> dict[str, Any]:
        return self.view(name, **params).document

    def _compute_once(self, key: ViewKey) -> CachedView:
        with self._cache_lock:
            running = self._inflight.get(key)
            if running is None:
                running = self._inflight[key] = threading.Event()
                owner = True
            else:
                owner = False
        if not owner:
            running.wait()
            entry = self._cache.get(key)
            if entry is not None:
                return entry
            return self._compute_once(key)  # the owner failed (bad parameters): raise here too
        try:
            return self._compute(key)
        finally:
            with self._cache_lock:
                del self._inflight[key]
            running.set()

    def _compute(self, key: ViewKey) -> CachedView:
        with self._lock:
            entry = self._computed(key)
        return self._keep(entry)

    def _computed(self, key: ViewKey) -> CachedView:
        """The document of ``key`` at the fold as it is (the caller holds ``_lock``), not yet
        encoded nor cached."""
        name, items = key
        spec = VIEW_SPECS[name]
        params = dict(items)
        started = time.perf_counter()
        version = self._version
        position = self._log.position
        if spec.needs_now and params.get("now") is None:
            params["now"] = self.now()
        population = self._log.population
        maintained = population.summaries.maintained
        aggregate = None if maintained is None else maintained.find(name, params)
        with collector_paused():  # summarising and attributing many groups allocate no cycles
            if aggregate is not None:
                population.summaries.refresh()
                document = aggregate.document(population, params)
            else:
                document = spec.compute(population, **params)
        return CachedView(key, version, time.monotonic(), time.perf_counter() - started, document, position)

    def _keep(self, entry: CachedView) -> CachedView:
        entry.json_bytes()  # encode outside the readers' path and the lock
        self._store(entry)
        return entry

    def _store(self, entry: CachedView) -> None:
        with self._cache_lock:
            current = self._cache.get(entry.key)
            if current is not None and current.version > entry.version:
                return
            self._cache[entry.key] = entry
            self._counts["computes"] += 1
            if entry.key not in self._precomputed_set:
                self._on_demand[entry.key] = None
                self._on_demand.move_to_end(entry.key)
                while len(self._on_demand) > self.cache_size:
                    old, _ = self._on_demand.popitem(last=False)
                    self._cache.pop(old, None)

    def timeline(
        self, identity: str, read_events: Callable[[list[str]], Iterable[LoggedEvent]]
    ) -> dict[str, Any] | None:
        """The timeline document of the customer ``identity`` resolves to (any linked id,
        customer id or stream name), or None if unknown. ``read_events(streams)`` reads
        the member streams' events from the store; it runs without the lock."""
        if self._restored is not None:
            raise self._not_ready("a customer's timeline")
        with self._lock, collector_paused():  # the first query after a bulk fold summarises every group
            root = population_module.resolve(self._log.population, identity)
            if root is None:
                return None
            streams = sorted(population_module.members(self._log.population, root))
        events = list(read_events(streams))
        with self._lock:
            return views_module.timeline_view(self._log.population, identity, events)

    def all_documents(self) -> dict[str, dict[str, Any]]:
        """Every document of ``projections.views.all_views``, as these live views serve it
        (maintained where maintained) at their current position and "now": what the audit
        compares with a replay."""
        with self._lock:
            return {name: self._compute(self._key(view, params)).document for name, (view, params) in DOCUMENTS.items()}

    # --- precomputation ----------------------------------------------------------------

    def refresh(self) -> float:
        """Recompute every precomputed view now (in the caller's thread); seconds taken.

        The stale documents are computed in one hold of the lock: they all reflect the same
        position, and a refresh waits for one batch of the feed, not for a batch between each
        two documents (at a million customers under live ingest, those waits held the
        documents' freshness p99 at 6.6 s; one hold: 2.2 s). Encoding comes after, unlocked."""
        started = time.perf_counter()
        ready = self._restored is not None and self._restored_ready()  # before: these documents then hold it
        computed = []
        with self._lock:
            locked = time.perf_counter()
            version = self._version
            for key in self._precomputed:
                if self._closed.is_set():
                    break
                entry = self._cache.get(key)
                if entry is None or entry.version != version:
                    computed.append(self._computed(key))
        unlocked = time.perf_counter()
        for entry in computed:
            self._keep(entry)
        finished = time.perf_counter()
        self._last_refresh_seconds = finished - started
        self._refresh_times.add(waiting=locked - started, computing=unlocked - locked, encoding=finished - unlocked)
        self._refreshed_version = version
        self._counts["refreshes"] += 1
        if ready:
            self._take_over_if_caught_up()
        self._log_progress()
        self._unsaved = True
        self._save_if_due()
        return self._last_refresh_seconds

    def start(self) -> "LiveViews":
        """Start the background refresher (also started by the first change)."""
        self._background = True
        if self._refresher is None:
            self._start_refresher()
        return self

    def _start_refresher(self) -> None:
        with self._cache_lock:
            if self._refresher is not None:
                return
            self._refresher = threading.Thread(target=self._refresh_loop, name="live-views-refresher", daemon=True)
        self._refresher.start()

    def _refresh_loop(self) -> None:
        while not self._closed.is_set():
            with self._changed:
                self._changed.wait_for(
                    lambda: self._version != self._refreshed_version or self._closed.is_set(), timeout=1.0
                )
            if self._closed.is_set():
                return
            if self._version == self._refreshed_version:
                self._when_idle()
                continue
            # let a burst of changes land first, and the feed apply between two refreshes:
            # refreshing back to back starved it (bench/million runs 5 and 19, DECISIONS)
            self._closed.wait(self.refresh_delay)
            try:
                self.refresh()
            except Exception:  # keep serving the previous documents; retry on the next change
                self._refreshed_version = self._version
                log.exception("refreshing the precomputed views failed")

    def _when_idle(self) -> None:
        """The refresher's check while nothing changes: the shell's signal may come after
        the last refresh (the documents then already hold everything applied)."""
        if self._restored is not None and self._restored_ready() and self._refreshed_version == self._version:
            self._take_over_if_caught_up()
        self._log_progress()
        self._save_if_due()

    def close(self) -> None:
        self._closed.set()
        with self._changed:
            self._changed.notify_all()
        refresher = self._refresher
        if refresher is not None and refresher is not threading.current_thread():
            refresher.join(5.0)
        self._save_if_due(force=True)

    def __enter__(self) -> "LiveViews":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- documents saved across restarts -----------------------------------------------------

    def restore_documents(self, *, head: int | None, ready: Callable[[], bool] = lambda: True) -> int:
        """Serve the default documents the previous process saved (``documents_path``)
        until the live views caught up with them; returns how many are served (0: none,
        the views start empty as before). Call it before the feed starts.

        ``head`` is the store's head position: documents reflecting a later position
        come from another log (or one that lost events) and are ignored. ``ready`` is
        the feed's signal that the views hold what they had to read (e.g. the journeys
        topic applied to its end): the live documents take over at the first refresh
        that starts with it true and whose documents all reflect at least the
        restored position (``application.store_feed``'s fold is a watermark: it
        needs no signal)."""
        if self._documents_path is None:
            return 0
        saved = view_documents.read_documents(self._documents_path)
        if saved is None:
            return 0
        if saved.position is not None and (head is None or head < saved.position):
            log.warning("view documents %s reflect position %s but the log's head is %s: ignored, the views rebuild",
                        self._documents_path, saved.position, head)
            return 0
        restored = {}
        for item in saved.documents:
            key = (item.key[0], item.key[1])
            if key in self._precomputed_set:
                restored[key] = CachedView(key, -1, time.monotonic(), 0.0, item.document, item.position,
                                           _json=item.encoded)
        if not restored:
            return 0
        self._restored_ready = ready
        self._restored_from = saved
        self._restored_since = self._progress_logged = time.monotonic()
        self._restored = restored
        if self._background:
            self.start()  # refresh once even if nothing changes: an empty log needs no more to take over
        current = self.snapshot_version()
        if saved.version == current:
            log.info("serving %d restored view documents at position %s (saved %s) while the live views load",
                     len(restored), saved.position, saved.saved_at)
        else:
            log.warning("serving %d restored view documents of version %s at position %s (saved %s) while the "
                        "views of version %s rebuild", len(restored), saved.version, saved.position,
                        saved.saved_at, current)
        return len(restored)

    def restored_status(self) -> dict[str, Any] | None:
        """What is served while the live views load (None: the live views serve)."""
        saved = self._restored_from
        if saved is None:
            return None
        return {
            "position": saved.position,
            "version": saved.version,
            "views_version": self.snapshot_version(),
            "saved_at": saved.saved_at,
            "data_time": saved.data_time,
            "documents": len(self._restored or ()),
            "seconds": round(time.monotonic() - self._restored_since, 1),
        }

    def _take_over_if_caught_up(self) -> None:
        saved = self._restored_from
        if saved is None:
            return
        live = [self._cache.get(key) for key in self._precomputed]
        if any(entry is None or _before(entry.position, saved.position) for entry in live):
            return
        position = min((entry.position for entry in live if entry.position is not None), default=None)
        self._restored = None
        self._restored_from = None
        log.info("the live views took over from the restored documents after %.1f s: position %s (restored: %s%s)",
                 time.monotonic() - self._restored_since, position, saved.position,
                 "" if saved.version == self.snapshot_version()
                 else f", rebuilt from version {saved.version} to {self.snapshot_version()}")

    def _log_progress(self) -> None:
        """A line every ``PROGRESS_SECONDS`` while restored documents are served."""
        saved = self._restored_from
        now = time.monotonic()
        if saved is None or now - self._progress_logged < PROGRESS_SECONDS:
            return
        self._progress_logged = now
        log.info("live views loading for %.0f s: %s identities, position %s; restored documents at %s",
                 now - self._restored_since, f"{len(self._log.population.journeys):,}", self._log.position,
                 saved.position)

    def _not_ready(self, what: str) -> ViewsNotReady:
        saved = self._restored_from
        return ViewsNotReady(what, saved.position if saved is not None else None, len(self._log.population.journeys))

    def _save_if_due(self, *, force: bool = False) -> None:
        """Write the default documents if a refresh made new ones and ``save_interval``
        passed (``force``: now). Never while restored documents are served: the live
        ones are incomplete then, and the file holds what is being served."""
        if self._documents_path is None or not self._unsaved or self._restored is not None:
            return
        if not force and time.monotonic() - self._saved_at < self.save_interval:
            return
        with self._save_lock:
            entries = [self._cache.get(key) for key in self._precomputed]
            if any(entry is None for entry in entries):
                return
            data_time = self._log.data_time
            self._unsaved = False
            self._saved_at = time.monotonic()
            try:
                view_documents.write_documents(
                    self._documents_path, version=self.snapshot_version(),
                    data_time=data_time.isoformat() if data_time is not None else None,
                    saved_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    documents=[(entry.key, entry.position, entry.json_bytes()) for entry in entries],
                )
            except OSError as error:
                log.warning("could not save the view documents to %s: %s", self._documents_path, error)

    # --- the whole state across restarts --------------------------------------------------------

    def save_state(self, *, feed: dict[str, Any] | None, event_id: str | None) -> bool:
        """Save everything the views hold to ``state_folder`` for the next start
        (``application.view_state``), with ``feed``, the feed's checkpoint (call it once the
        feed stopped: nothing may be applied after), and ``event_id``, the id of the event
        at ``position`` in the log. False if there is nowhere to save or nothing to save."""
        if self._state_folder is None:
            return False
        with self._lock:
            if self._restored is not None or self._log.position is None:
                view_state.discard(self._state_folder)  # still loading (or empty): the next start rebuilds
                return False
            started = time.perf_counter()
            self._log.population.summaries.refresh()  # nothing pending: the aggregates hold every change
            journeys = self._log.population.journeys
            try:
                with collector_paused():
                    size = view_state.save(
                        self._state_folder, self._log, journeys=journeys if isinstance(journeys, SpilledJourneys) else None,
                        header={"position": self._log.position, "event_id": event_id, "feed": feed,
                                "identities": len(journeys), "views_version": self.snapshot_version()},
                    )
            except Exception as error:  # noqa: BLE001 - whatever failed, no state is left to be taken up
                log.warning("could not save the views state to %s: %r", self._state_folder, error)
                view_state.discard(self._state_folder)
                return False
        log.info("views state saved in %.1f s (%s MiB): position %s", time.perf_counter() - started,
                 f"{size / 2**20:,.0f}", self._log.position)
        return True

    def load_state(self, *, holds: Callable[[int, str | None], bool], feed: str) -> dict[str, Any] | None:
        """``find_state`` then ``take_up_state``, in the caller's thread: the feed's checkpoint,
        or None when nothing was taken up (the views start empty, as before)."""
        saved = self.find_state(holds=holds, feed=feed)
        return None if saved is None else self.take_up_state(saved)

    def find_state(self, *, holds: Callable[[int, str | None], bool], feed: str) -> view_state.SavedState | None:
        """The state the previous process saved, if this code, this log and this ``feed``
        (its ``checkpoint()["kind"]``) can take it up: ``holds(position, event_id)`` says whether
        the log still holds that event at that position. One that cannot be taken up is
        removed with a log line. Reads only its header: cheap."""
        if self._state_folder is None:
            return None
        saved = view_state.read_header(self._state_folder)
        if saved is None:
            return None
        why = None
        if (saved.feed or {}).get("kind") != feed:
            # a store feed resumes after ``position``, which only a store feed's fold makes a watermark
            why = f"was saved by a {(saved.feed or {}).get('kind')} feed, not a {feed} one"
        elif saved.position is None or not holds(saved.position, saved.event_id):
            why = f"reflects position {saved.position}, which this log does not hold as it was"
        elif saved.has_journeys_file != (self._journeys_folder is not None):
            why = f"kept its journeys {'in a file' if saved.has_journeys_file else 'in memory'}, these do not"
        elif saved.has_contributions_file != self._contributions_in_file:
            where = "in a file" if saved.has_contributions_file else "in memory"
            why = f"kept its maintained views' contributions {where}, these do not"
        if why is not None:
            log.warning("views state in %s %s: ignored, the views rebuild", self._state_folder, why)
            view_state.discard(self._state_folder)
            return None
        return saved

    def take_up_state(self, saved: view_state.SavedState) -> dict[str, Any] | None:
        """Take up ``saved`` (from ``find_state``; seconds at a million customers): the views
        become what they were when it was saved, and restored documents no newer than it stop
        being served, so every query is answered. Returns the feed's checkpoint saved with it
        (start the feed after this), or None if it could not be read (the views rebuild)."""
        folder = self._journeys_folder
        try:
            with collector_paused():
                fold = view_state.take_up(
                    saved, journeys=None if folder is None else lambda path: SpilledJourneys(folder, adopt=path))
                freeze_loaded_state()
        except Exception:  # a state that cannot be read is a cache miss, never a failed start
            log.exception("views state in %s could not be taken up: the views rebuild", self._state_folder)
            return None
        with self._lock:
            previous = self._log.population.journeys
            self._log = fold
            if isinstance(previous, SpilledJourneys):
                previous.close()
            documents = self._restored_from
            if documents is not None and not _before(fold.position, documents.position):
                self._restored = None
                self._restored_from = None
                log.info("the views' state took over from the restored documents after %.1f s",
                         time.monotonic() - self._restored_since)
            self._bump()
        settle_long_lived_state()
        return saved.feed

    def take_up_then_feed(
        self, saved: view_state.SavedState, feed: Any, *, then: Callable[[], None] | None = None,
        if_not_taken_up: Callable[[], None] | None = None,
    ) -> threading.Thread:
        """``take_up_state`` in a thread, then start ``feed`` (resumed from the checkpoint saved
        with the state, if it has ``resume_from``) and call ``then``: call it once the API
        listens, after ``restore_documents``, whose documents are served meanwhile. If the
        state could not be taken up, ``if_not_taken_up`` is called before the feed starts
        (what the feed's topic does not hold, the views must get otherwise). The thread is
        returned (join it before saving a state on stop)."""

        def run() -> None:
            checkpoint = self.take_up_state(saved)
            if self._closed.is_set():
                return
            if checkpoint is None and if_not_taken_up is not None:
                if_not_taken_up()
            if checkpoint is not None and hasattr(feed, "resume_from"):
                feed.resume_from(checkpoint)
            feed.start()
            if then is not None:
                then()

        thread = threading.Thread(target=run, name="views-state", daemon=True)
        thread.start()
        return thread

    def newer_journeys_only(self, on: bool) -> None:
        """While on, a journey that is not newer than the one held (it reflects no higher log
        position) is not applied: a feed reading its topic again from the beginning (the
        broker lost it, and the processors republish as they fold the log again) must not
        take the views back to what they were, nor spend a refresh on journeys they hold."""
        self._newer_only = on

    # --- observation and snapshots ---------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._cache_lock:
            cached = len(self._cache)
        return {
            "position": self._log.position,
            "documents_position": self.documents_position,
            "version": self._version,
            "refreshed_version": self._refreshed_version,
            "data_time": self._log.data_time.isoformat() if self._log.data_time is not None else None,
            **self._counts,
            "cached_views": cached,
            "precomputed_views": len(self._precomputed),
            "maintained_views": len(self._log.population.summaries.maintained or ()),
            "last_refresh_seconds": round(self._last_refresh_seconds, 4),
            **self._refresh_times.stats(),
            "restored": self.restored_status(),
        }

    @staticmethod
    def snapshot_version() -> str:
        """Snapshots are reused only by the same projections' versions."""
        return f"{SNAPSHOT_FORMAT}.{views_module.VERSION}.{journey_module.VERSION}"

    def journeys_snapshot(self) -> tuple[int | None, str | None, list[bytes]]:
        """Position, data time and every identity's journey (``to_bytes``): enough to
        rebuild the population with ``restore`` (``apply_journey`` of per-identity
        folds equals the full fold)."""
        with self._lock:
            journeys = [journey.to_bytes() for journey in self._log.population.journeys.values()]
            data_time = self._log.data_time.isoformat() if self._log.data_time is not None else None
            return self._log.position, data_time, journeys

    def restore(
        self, journeys: Iterable[tuple[str, IdentityJourney]], *, position: int | None, data_time: str | None
    ) -> None:
        """Load journeys saved by ``journeys_snapshot`` (into an empty holder)."""
        self.apply_journeys(journeys)
        with self._lock:
            self._log.position = position
            self._log.data_time = datetime.fromisoformat(data_time) if data_time else None
            self._counts["journeys_applied"] = 0
