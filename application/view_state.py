"""The live views' whole state, saved when the API stops and taken up when it starts.

Rebuilding the views after a restart means reading every journey again and summarising
every group (minutes at a million customers). So a process that stops cleanly saves what
its ``LogFold`` holds (the identity graph, the maintained aggregates, position and data
time; the journeys too when they are in memory) with the position of its feed, and the
next start takes it up and follows the feed from there: Kafka Streams' local state with a
checkpoint written on a clean shutdown.

The state is written as ``pickle`` (the C pickler: ~1 s at 100,000 customers, where a
format of our own would walk the same objects in Python) after a JSON header that is
checked before anything is unpickled:

- ``code``: a digest of the modules whose objects are pickled (``projections/`` and the
  shells' own): any change to them, even a comment, and the state is not taken up (a
  layout read by other code could be wrong without failing);
- ``position`` and ``event_id``: the log must still hold that event at that position
  (a recreated or other store is never mixed with a state);
- the feed's own checkpoint (``feed``), given back to the feed.

The journeys, when they live in a file (``application.journey_spill``, with the maintained
aggregates' kept contributions), are copied beside it (SQLite's backup) and adopted by the next process. A state is used once: taking it up
removes it, since the views change from then on; a process that is killed leaves none, and
the next start rebuilds (serving the saved documents meanwhile, ``application.view_documents``).
The data folder is trusted as the store beside it is: unpickling runs code the file names.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

from application.durable_files import sync_folder
from application.journey_spill import SpilledContributions, SpilledJourneys
from projections import group as group_module
from projections import journey as journey_module

log = logging.getLogger(__name__)

FORMAT = 1
MAGIC = b"touchpoints views state\n"
STATE_FILE = "state.pickle"
JOURNEYS_FILE = "state-journeys.sqlite"
TAKE_UP_TIMEOUT = 300.0  # seconds a stop waits for a state being taken up (a million customers: ~10)
_ROOT = Path(__file__).resolve().parent.parent
_PICKLED_CODE = ("projections", "application/fold.py", "application/journey_spill.py", "application/view_state.py",
                 "application/live_views.py")


def state_folder(data: Path) -> Path:
    """Where a process whose data folder is ``data`` saves its views' state."""
    return Path(data) / "views"


def event_id_at(store: Any, position: int | None) -> str | None:
    """The id of the event at ``position`` in ``store`` (None: no such event)."""
    if position is None:
        return None
    found = next(iter(store.read_all(position, limit=1)), None)
    return str(found.event_id) if found is not None and found.position == position else None


def log_holds(store: Any) -> Callable[[int, str | None], bool]:
    """``holds(position, event_id)`` for ``LiveViews.load_state``: the log still has that event there."""
    return lambda position, event_id: event_id is not None and event_id_at(store, position) == event_id


def save_on_stop(views: Any, feed: Any, store: Any) -> None:
    """What a shell does once its feed stopped: ``views.save_state`` with the feed's
    checkpoint and the id of the event at the views' position. A state is a cache: a
    failure is logged, never a failed stop."""
    try:
        views.save_state(feed=feed.checkpoint(), event_id=event_id_at(store, views.position))
    except Exception:  # noqa: BLE001
        log.exception("saving the views state failed: the next start rebuilds the views")


def code_digest() -> str:
    """A digest of the source of every module whose objects the state holds."""
    digest = hashlib.sha256()
    for name in _PICKLED_CODE:
        path = _ROOT / name
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(source.relative_to(_ROOT)).encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class SavedState:
    """What a saved state says of itself (its header), read without unpickling it."""

    folder: Path
    header: dict[str, Any]

    @property
    def position(self) -> int | None:
        return self.header.get("position")

    @property
    def event_id(self) -> str | None:
        return self.header.get("event_id")

    @property
    def feed(self) -> dict[str, Any] | None:
        return self.header.get("feed")

    @property
    def has_journeys_file(self) -> bool:
        return bool(self.header.get("journeys_file"))

    @property
    def has_contributions_file(self) -> bool:
        return bool(self.header.get("contributions_file"))


def _saved_journeys() -> Any:  # replaced by the adopted file while a state is loaded
    raise pickle.UnpicklingError("a views state naming a journeys file was loaded without one")


def _saved_contributions() -> Any:  # replaced by the adopted file's while a state is loaded
    raise pickle.UnpicklingError("a views state naming kept contributions in a file was loaded without one")


def _shared_empty(module: str) -> Any:
    return importlib.import_module(module)._NO_CONSENTS


def _reduce_proxy(proxy: MappingProxyType) -> tuple:
    """The shared empty consents (compared by identity) unpickle as themselves."""
    for module in (journey_module, group_module):
        if proxy is module._NO_CONSENTS:
            return _shared_empty, (module.__name__,)
    raise pickle.PicklingError("a read-only mapping other than the shared empty consents")


class _Pickler(pickle.Pickler):
    # a dispatch entry is looked up in C: a persistent_id method would be called for every object
    dispatch_table = {
        SpilledJourneys: lambda journeys: (_saved_journeys, ()),
        SpilledContributions: lambda kept: (_saved_contributions, ()),  # beside the journeys, in their file
        MappingProxyType: _reduce_proxy,
    }


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, journeys: SpilledJourneys | None):
        super().__init__(file)
        self._journeys = journeys

    def find_class(self, module: str, name: str) -> Any:
        # What this returns goes into the memo: it must not hold the unpickler, or the memo
        # (8 bytes an object, ~16M objects at a million customers) and the unpickler are a
        # cycle that outlives the load, and frozen with the state it is never collected.
        if (module, name) == (__name__, "_saved_journeys") and self._journeys is not None:
            return functools.partial(_the, self._journeys)
        if (module, name) == (__name__, "_saved_contributions") and self._journeys is not None:
            return self._journeys.contributions
        return super().find_class(module, name)


def _the(value: Any) -> Any:
    return value


def save(folder: Path, fold: Any, *, header: dict[str, Any], journeys: SpilledJourneys | None) -> int:
    """Write ``fold`` (a ``LogFold``) and ``header`` to ``folder``, replacing any state
    there whole (temp file, fsync, rename); the journeys file first. Bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    state = folder / STATE_FILE
    state.unlink(missing_ok=True)  # never a new journeys file beside an old state
    if journeys is not None:
        journeys.save_copy(folder / JOURNEYS_FILE)
    else:
        (folder / JOURNEYS_FILE).unlink(missing_ok=True)
    maintained = fold.population.summaries.maintained
    in_file = maintained is not None and isinstance(maintained.kept, SpilledContributions)
    header = {**header, "format": FORMAT, "code": code_digest(), "journeys_file": journeys is not None,
              "contributions_file": in_file,
              "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    head = json.dumps(header).encode()
    partial = folder / (STATE_FILE + ".partial")
    with open(partial, "wb") as file:
        file.write(MAGIC + len(head).to_bytes(4, "big") + head)
        _Pickler(file, protocol=pickle.HIGHEST_PROTOCOL).dump(fold)
        file.flush()
        os.fsync(file.fileno())
        size = file.tell()
    os.replace(partial, state)
    sync_folder(folder)
    return size


def read_header(folder: Path) -> SavedState | None:
    """The saved state's header if one is there and this code can take it up, else None
    (with a log line saying why when one is there)."""
    state = folder / STATE_FILE
    try:
        with open(state, "rb") as file:
            header = _header(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("views state %s unreadable (%s): ignored, the views rebuild", state, error)
        return None
    if header.get("format") != FORMAT or header.get("code") != code_digest():
        log.info("views state %s was saved by other code: ignored, the views rebuild", state)
        return None
    if header.get("journeys_file") and not (folder / JOURNEYS_FILE).exists():
        log.warning("views state %s names a journeys file that is gone: ignored, the views rebuild", state)
        return None
    return SavedState(folder, header)


def take_up(saved: SavedState, *, journeys: Callable[[Path], SpilledJourneys] | None) -> Any:
    """Unpickle the ``LogFold`` of ``saved``, its journeys adopted by ``journeys(path)``
    when it has a file of them; the state is removed (used once) whether or not it loads."""
    state = saved.folder / STATE_FILE
    started = time.perf_counter()
    try:
        adopted = journeys(saved.folder / JOURNEYS_FILE) if saved.has_journeys_file and journeys else None
        with open(state, "rb") as file:
            _header(file)
            fold = _Unpickler(file, adopted).load()
    finally:
        discard(saved.folder)
    log.info("views state taken up in %.1f s: position %s, saved %s", time.perf_counter() - started,
             saved.position, saved.header.get("saved_at"))
    return fold


def discard(folder: Path) -> None:
    """Remove any saved state from ``folder``."""
    for name in (STATE_FILE, JOURNEYS_FILE, STATE_FILE + ".partial", JOURNEYS_FILE + ".partial"):
        (folder / name).unlink(missing_ok=True)


def _header(file: Any) -> dict[str, Any]:
    if file.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a views state")
    size = int.from_bytes(file.read(4), "big")
    header = json.loads(file.read(size))
    if not isinstance(header, dict):
        raise ValueError("its header is not an object")
    return header
