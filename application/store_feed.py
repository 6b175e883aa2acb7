"""Feeding live views straight from the event store, without Kafka.

``StoreFeed(store, views)`` runs a catch-up subscription on the store, decodes what it
delivers (the registry's one decoder) and folds it through ``LiveViews.apply_events`` (the
fold shell, ``application.fold``) in batches: history first, then every new append within
a poll interval. It is the live mode of ``touchpoints serve``, of the CLI's
view commands and of the tests; ``touchpoints up`` feeds the same ``LiveViews`` from the
Kafka journeys topic instead (``streams.view_feed``).

Two threads: a reader iterating the (blocking) subscription into a bounded queue, and an
applier that takes what has queued (up to ``batch_size``, waiting at most ``linger``
for more once one event arrived) and folds it in one call, so a burst of appends costs
a few fold batches and one view refresh, not one per event.

``load_views(store)`` is the one-shot form the CLI uses: fold the whole log (optionally
starting from a snapshot keyed by the head position) and return the views.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from events.logged import LoggedEvent
from events.registry import REGISTRY, EventRegistry, InvalidEvent, decode_recorded
from events.store import EventStore, RecordedEvent
from application.live_views import LiveViews
from application.view_state import event_id_at
from projections.journey import IdentityJourney

log = logging.getLogger(__name__)

_END = object()  # the reader's "subscription finished" marker


class StoreFeed:
    """A background catch-up subscription from ``store`` into ``views``."""

    def __init__(
        self,
        store: EventStore,
        views: LiveViews,
        *,
        registry: EventRegistry = REGISTRY,
        batch_size: int = 5_000,
        poll_interval: float = 0.05,
        queue_size: int = 50_000,
        retry_delay: float = 1.0,
        linger: float = 0.01,
    ):
        self.store = store
        self.views = views
        self.registry = registry
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.linger = linger  # how long a batch waits for more events once one arrived
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._stopping = threading.Event()
        self._subscription: Any = None
        self._threads: list[threading.Thread] = []
        self._newest_read: RecordedEvent | None = None
        self._last_applied_recorded_at: datetime | None = None
        self.applied = 0
        self.undecodable = 0
        self.errors = 0
        self.last_error: str | None = None

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> "StoreFeed":
        if self._threads:
            return self
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._read, name="store-feed-reader", daemon=True),
            threading.Thread(target=self._apply, name="store-feed-applier", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        subscription = self._subscription
        if subscription is not None:
            subscription.stop()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def __enter__(self) -> "StoreFeed":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def wait_until_caught_up(self, timeout: float = 30.0) -> bool:
        """Block until the views hold everything the store held when called."""
        head = self.store.head_position()
        deadline = time.monotonic() + timeout
        while head is not None and (self.views.position is None or self.views.position < head):
            if time.monotonic() >= deadline:
                return False
            self.views.wait_for_change(min(0.05, max(0.0, deadline - time.monotonic())))
        return True

    def checkpoint(self) -> dict[str, Any]:
        """What a views state saved with this feed needs to resume it: nothing but its kind
        (the fold is a watermark: the next feed reads after the views' position)."""
        return {"kind": "store"}

    # --- observation -------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        newest = self._newest_read
        lag_seconds = 0.0
        if newest is not None and self._last_applied_recorded_at is not None:
            lag_seconds = max(0.0, (newest.recorded_at - self._last_applied_recorded_at).total_seconds())
        elif newest is not None:
            lag_seconds = max(0.0, (datetime.now(timezone.utc) - newest.recorded_at).total_seconds())
        return {
            "status": "ok" if self.running and self.last_error is None else "degraded",
            "running": self.running,
            "applied": self.applied,
            "backlog_events": self._queue.qsize(),
            "lag_seconds": round(lag_seconds, 3),
            "position": self.views.position,
            "undecodable": self.undecodable,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    # --- threads -------------------------------------------------------------------

    def _read(self) -> None:
        while not self._stopping.is_set():
            position = self.views.position
            start = 0 if position is None else position + 1
            try:
                self._subscription = self.store.subscribe(start, poll_interval=self.poll_interval)
                if self._stopping.is_set():
                    self._subscription.stop()
                for recorded in self._subscription:
                    self._newest_read = recorded
                    self._put(recorded)
                    if self._stopping.is_set():
                        break
            except Exception as error:  # retry from what was applied; never die silently
                self._note_error(f"subscription failed: {error!r}")
                self._wait_for_applier()
                self._stopping.wait(self.retry_delay)
                continue
            break
        self._put(_END)

    def _put(self, item: Any) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stopping.is_set() and item is not _END:
                    return

    def _wait_for_applier(self) -> None:
        """After a failure, restart from what was applied: let the queue drain first."""
        while not self._queue.empty() and not self._stopping.is_set():
            time.sleep(0.01)

    def _apply(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            if first is _END:
                return
            batch = [first]
            finished = False
            linger_until = time.monotonic() + self.linger
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, linger_until - time.monotonic()))
                except queue.Empty:
                    break
                if item is _END:
                    finished = True
                    break
                batch.append(item)
            self._fold(batch)
            if finished:
                return

    def _fold(self, batch: list[RecordedEvent]) -> None:
        logged = []
        for recorded in batch:
            try:
                logged.append(decode_recorded(recorded, self.registry))
            except (InvalidEvent, ValueError) as error:
                # A stored event this process cannot decode (e.g. a plugin type not installed
                # here) is counted and logged, not allowed to stop every view.
                self.undecodable += 1
                log.error("position %s (%s) cannot be decoded: %s", recorded.position, recorded.type, error)
        try:
            self.views.apply_events(logged, through_position=batch[-1].position)
        except Exception as error:  # keep serving the last good views; report the fault
            self._note_error(f"fold failed at positions {batch[0].position}..{batch[-1].position}: {error}")
            log.exception("folding a batch into the live views failed")
            return
        self.applied += len(logged)
        self._last_applied_recorded_at = batch[-1].recorded_at

    def _note_error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message
        log.warning("store feed: %s", message)


def read_member_events(
    store: EventStore, streams: Iterable[str], registry: EventRegistry = REGISTRY, *,
    as_of: datetime | None = None, known_at: datetime | None = None,
) -> list[LoggedEvent]:
    """The decoded events of ``streams`` (a timeline's member streams), optionally only
    those that occurred (``as_of``) or were recorded (``known_at``) up to a time, inclusive."""
    events = []
    for stream in streams:
        for recorded in store.read_stream(stream):
            if as_of is not None and recorded.occurred_at > as_of:
                continue
            if known_at is not None and recorded.recorded_at > known_at:
                continue
            events.append(decode_recorded(recorded, registry))
    return events


# --- one-shot loading for the CLI ------------------------------------------------------

SNAPSHOT_FILE = "views.snapshot"


def load_views(
    store: EventStore,
    *,
    registry: EventRegistry = REGISTRY,
    snapshot_dir: Path | None = None,
    page_size: int = 20_000,
    progress: Callable[[int], None] | None = None,
    **live_views_options: Any,
) -> LiveViews:
    """Fold the whole log into a fresh ``LiveViews`` (no background refresher).

    With ``snapshot_dir`` (one folder per store), the folded journeys are saved there
    with the position they reach; the next call starts from that snapshot and folds
    only the events appended since. A snapshot is used only if its format and the
    projections' versions match and the store still holds its last event at its
    position (so a recreated store is never mixed with an old snapshot)."""
    live_views_options.setdefault("background", False)
    views = _read_snapshot(snapshot_dir, store, live_views_options) if snapshot_dir else None
    if views is None:
        views = LiveViews(**live_views_options)
    start_position = views.position
    last_event_id = None
    while True:
        start = 0 if views.position is None else views.position + 1
        page = list(store.read_all(start, limit=page_size))
        if not page:
            break
        views.apply_events([decode_recorded(recorded, registry) for recorded in page],
                           through_position=page[-1].position)
        last_event_id = page[-1].event_id
        if progress is not None:
            progress(len(page))
    if snapshot_dir is not None and last_event_id is not None and views.position != start_position:
        _write_snapshot(snapshot_dir, views, last_event_id)
    return views


def _read_snapshot(folder: Path, store: EventStore, options: dict[str, Any]) -> LiveViews | None:
    path = folder / SNAPSHOT_FILE
    if not path.exists():
        return None
    try:
        with path.open("rb") as file:
            header = orjson.loads(file.readline())
            if header.get("format") != LiveViews.snapshot_version():
                return None
            position = header["position"]
            if event_id_at(store, position) != header["last_event_id"]:
                return None
            journeys = []
            while size_bytes := file.read(4):
                raw = file.read(int.from_bytes(size_bytes, "big"))
                journey = IdentityJourney.from_bytes(raw)
                journeys.append((journey.key, journey))
        views = LiveViews(**options)
        views.restore(journeys, position=position, data_time=header["data_time"])
        return views
    except Exception as error:  # a bad snapshot only costs a full fold
        log.warning("ignoring the unreadable views snapshot %s: %s", path, error)
        return None


def _write_snapshot(folder: Path, views: LiveViews, last_event_id: Any) -> None:
    path = folder / SNAPSHOT_FILE
    temporary = path.with_suffix(".tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        position, data_time, journeys = views.journeys_snapshot()
        header = {"format": LiveViews.snapshot_version(), "position": position,
                  "last_event_id": str(last_event_id), "data_time": data_time}
        with temporary.open("wb") as file:
            file.write(orjson.dumps(header) + b"\n")
            for raw in journeys:
                file.write(len(raw).to_bytes(4, "big"))
                file.write(raw)
        temporary.replace(path)
    except OSError as error:
        log.warning("could not write a views snapshot to %s: %s", folder, error)
