"""``Sealing``: what a process is told to do with personal data, small enough to send to
the processes that decode ingestion (the API's decoding workers, forked backfill
decoders). Each process opens its own key store connection and ``Sealer`` on first use
(after a fork too: a SQLite connection must not cross one)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from application.privacy.mode import UnsealedPin
from application.privacy.opening import Opener
from application.privacy.sealing import Sealer
from application.privacy.sqlite_keys import KEYS_FILE, SQLiteKeyStore
from events.models import Event
from events.registry import EventRegistry

_lock = threading.Lock()
_opened: dict[tuple[str, bool], tuple[int, SQLiteKeyStore, Sealer]] = {}


@dataclass(frozen=True, slots=True)
class Sealing:
    """Seal personal fields with the key store at ``key_store`` (``customer_ids``: customer
    ids are personal too)."""

    key_store: str
    customer_ids: bool = False

    @classmethod
    def in_folder(cls, data: Path | str, *, customer_ids: bool = False) -> "Sealing":
        return cls(str(Path(data) / KEYS_FILE), customer_ids)

    def seal(self, events: Sequence[Event]) -> list[Event]:
        return self.sealer().seal(events)

    def sealer(self) -> Sealer:
        return self._open()[1]

    def keys(self) -> SQLiteKeyStore:
        return self._open()[0]

    def opener(self) -> Opener:
        return Opener(self.keys())

    def _open(self) -> tuple[SQLiteKeyStore, Sealer]:
        name = (self.key_store, self.customer_ids)
        with _lock:
            opened = _opened.get(name)
            if opened is None or opened[0] != os.getpid():
                keys = SQLiteKeyStore(self.key_store)
                opened = _opened[name] = (os.getpid(), keys, Sealer(keys, customer_ids=self.customer_ids))
            return opened[1], opened[2]

    def close(self) -> None:
        """Close this process's connection (a test's data folder is about to go)."""
        with _lock:
            opened = _opened.pop((self.key_store, self.customer_ids), None)
        if opened is not None and opened[0] == os.getpid():
            opened[1].close()


def ingest_registry(
    registry: EventRegistry, sealing: Sealing | None, *, data: Path | str | None = None
) -> EventRegistry:
    """The registry ingestion decodes with: one that seals, or without ``sealing`` one that
    records "not sealed" in the key store of the data folder ``data`` at its first batch
    (``mode.UnsealedPin``; a ``Sealer`` records the sealed mode itself), or ``registry``
    itself when neither is asked."""
    if sealing is not None:
        return registry.with_ingest_step(sealing.seal, large_batches=True)
    if data is not None:
        return registry.with_ingest_step(UnsealedPin(str(Path(data) / KEYS_FILE)))
    return registry
