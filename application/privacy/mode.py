"""The sealing mode of a log: fixed by its first append, checked by every entry point.

A log's personal fields are sealed (stored as pseudonyms, ``application.privacy.sealing``)
or not, for good. Were the mode to change, the same cookie would be a value in the old
events and a pseudonym in the new ones: one person split in two, every view changed
without a word. So:

* The first append records the mode in the key store's metadata (``KeyStore.pin``, in
  ``<data>/keys.db``, beside the keys and the pepper the pseudonyms depend on): a sealing
  process through its ``Sealer``, an unsealed one through ``UnsealedPin``, the ingest step
  of an unsealed ingestion. Whichever process pins first wins; the other's append is refused.
* Every entry point settles its settings against the log before it appends or reads
  personal data (``settle``). ``TOUCHPOINTS_SEAL_PERSONAL_DATA`` (and
  ``TOUCHPOINTS_SEAL_CUSTOMER_IDS``) unset take the recorded mode; set to another mode,
  the process refuses to start (``SealingModeError``, naming the variable, the recorded
  mode and the fix). A log with events and no recorded mode was written before modes
  were recorded: unsealed.
* An empty log with nothing recorded takes the setting, or, unset,
  ``application.settings.SEAL_PERSONAL_DATA_DEFAULT``: changing that default changes new
  data folders only, never the mode of a log that has events.

With KurrentDB the mode belongs with the log, which several hosts share: in the metadata
of a settings stream, written with ``expected_version`` "no stream" so the first writer
wins (not built). Until then it is pinned in the key store, which those hosts must share
anyway: a key store (and pepper) per host would give one person other pseudonyms per host.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from application.privacy.keys import KeyStore, KeyStoreError
from application.privacy.sqlite_keys import KEYS_FILE, SQLiteKeyStore
from events.models import Event

if TYPE_CHECKING:
    from application.settings import Settings
    from events.store import EventStore

SEALED_POLICY = "personal_data_sealed"
CUSTOMER_IDS_POLICY = "customer_ids_sealed"
SEAL_VARIABLE = "TOUCHPOINTS_SEAL_PERSONAL_DATA"
CUSTOMER_IDS_VARIABLE = "TOUCHPOINTS_SEAL_CUSTOMER_IDS"


class SealingModeError(KeyStoreError):
    """The settings ask for another sealing mode than the log's."""


@dataclass(frozen=True, slots=True)
class SealingMode:
    sealed: bool
    customer_ids: bool = False  # customer ids sealed too (only with ``sealed``)

    def describe(self) -> str:
        if not self.sealed:
            return "not sealed"
        return "sealed, customer ids too" if self.customer_ids else "sealed, customer ids kept as they are"


UNSEALED = SealingMode(False)


def _flag(value: bool) -> str:
    return "1" if value else "0"


def pin_mode(keys: KeyStore, mode: SealingMode) -> None:
    """Record ``mode`` in ``keys`` unless a mode is recorded there; SealingModeError if the
    recorded one is another (another process appended first in its mode)."""
    sealed = keys.pin(SEALED_POLICY, _flag(mode.sealed)) == "1"
    customer_ids = sealed and keys.pin(CUSTOMER_IDS_POLICY, _flag(mode.customer_ids)) == "1"
    recorded = SealingMode(sealed, customer_ids)
    if recorded != mode:
        raise SealingModeError(
            f"this log's personal data is {recorded.describe()} (recorded in the key store {_where(keys)}); "
            f"it cannot change once events are stored (their pseudonyms would split people), "
            f"so this process, set up for {mode.describe()}, appends nothing"
        )


def _where(keys: KeyStore) -> str:
    return str(getattr(keys, "path", "")) or "of this deployment"


def recorded_mode(data: Path | str) -> SealingMode | None:
    """The mode recorded in the data folder's key store, None if none is (the file is only
    read: a read-only command creates nothing)."""
    path = Path(data) / KEYS_FILE
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            rows = dict(db.execute("SELECT name, value FROM meta WHERE name IN (?, ?)",
                                   ("policy:" + SEALED_POLICY, "policy:" + CUSTOMER_IDS_POLICY)).fetchall())
        finally:
            db.close()
    except sqlite3.DatabaseError as error:
        raise KeyStoreError(f"cannot read the sealing mode from the key store {path}: {error}") from error
    sealed = rows.get("policy:" + SEALED_POLICY)
    customer_ids = rows.get("policy:" + CUSTOMER_IDS_POLICY)
    if sealed is None and customer_ids is None:
        return None
    if sealed is not None and bytes(sealed) == b"0":
        return UNSEALED
    # a Sealer pins both; customer ids alone were pinned by sealing before the mode was recorded
    return SealingMode(True, customer_ids is not None and bytes(customer_ids) == b"1")


def settle(settings: Settings, store: EventStore) -> Settings:
    """``settings`` with ``seal_personal_data`` and ``seal_customer_ids`` decided for the log
    in ``store`` and the key store of ``settings.data`` (module docstring);
    SealingModeError when an explicit setting contradicts the log's mode."""
    recorded = recorded_mode(settings.data)
    empty = store.head_position() is None
    legacy = recorded is None and not empty
    if legacy:
        recorded = UNSEALED
    if recorded is None:
        sealed = settings.seal_personal_data
        if sealed is None:
            sealed = settings.new_logs_sealed
        mode = SealingMode(sealed, sealed and bool(settings.seal_customer_ids))
    else:
        _refuse_contradictions(settings, recorded, legacy=legacy, empty=empty)
        mode = recorded
    return settings.model_copy(update={"seal_personal_data": mode.sealed, "seal_customer_ids": mode.customer_ids})


def _refuse_contradictions(settings: Settings, recorded: SealingMode, *, legacy: bool, empty: bool) -> None:
    asked = settings.seal_personal_data
    if asked is not None and asked != recorded.sealed:
        variable, value = SEAL_VARIABLE, asked
    elif recorded.sealed and settings.seal_customer_ids not in (None, recorded.customer_ids):
        variable, value = CUSTOMER_IDS_VARIABLE, settings.seal_customer_ids
    else:
        return
    keys = Path(settings.data) / KEYS_FILE
    if legacy:
        where = "its events were stored before the mode was recorded, unsealed"
    else:
        where = f"recorded in {keys} by its first append"
    fix = (f"unset {variable} (the log's mode then applies) or set it to {_flag(not value)}; "
           "to change the mode, ingest the log's events into a new data folder and store "
           "(TOUCHPOINTS_DATA, TOUCHPOINTS_STORE) started with the mode you want")
    if empty:
        fix += f"; this log is still empty, so deleting {keys} also lets you choose again"
    raise SealingModeError(
        f"{variable}={_flag(value)} contradicts this log: its personal data is {recorded.describe()} ({where}). "
        f"One log keeps one mode: another would name a person by a value in some events and a pseudonym "
        f"in others, splitting people and changing the views. Fix: {fix}"
    )


class UnsealedPin:
    """The ingest step of an unsealed ingestion: before the first batch this process makes
    ready, pin "not sealed" in the key store at ``key_store`` (``pin_mode``); the events
    pass unchanged. Sent to decoder processes with the registry: each pins once for itself."""

    def __init__(self, key_store: str):
        self.key_store = key_store
        self._pinned = False

    def __getstate__(self) -> dict[str, object]:
        return {"key_store": self.key_store, "_pinned": False}

    def __call__(self, events: list[Event]) -> list[Event]:
        if not self._pinned:
            keys = SQLiteKeyStore(self.key_store)
            try:
                pin_mode(keys, UNSEALED)
            finally:
                keys.close()
            self._pinned = True
        return events
