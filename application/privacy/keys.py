"""The key store port: one random data key per identity, destroyed on erasure.

Keys are looked up by the identity's key id (``pseudonyms.subject_key_id``). Beside each
key the store keeps the identity's own value sealed with that key, so a reader can turn a
token naming a person (a view's row, a stream name) back into the value while the key
exists. The pepper of the pseudonyms lives here too: one per store, made on first use.

Several processes (the API, its decoding workers, forked backfill decoders, the inbound
agent) create keys at once: ``ensure`` keeps whichever key was stored first, so every
process seals one identity with one key. ``generation`` grows with every erasure, so a
process drops the keys it cached when another process destroyed some.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


class KeyStoreError(Exception):
    """The key store cannot be used (a policy mismatch, a damaged file)."""


@dataclass(frozen=True, slots=True)
class Destroyed:
    """What ``KeyStore.destroy`` did: keys deleted, and whether no copy of them is left in
    the store's journal (False: a reader held it; the next destroy empties it)."""

    keys: int
    journal_emptied: bool


class KeyStore(Protocol):
    def pepper(self) -> bytes:
        """The pseudonym pepper, made on first use and never changed."""
        ...

    def pin(self, name: str, value: str) -> str:
        """The value stored under ``name``, storing ``value`` if there is none yet (a policy
        the log depends on, such as whether customer ids are sealed)."""
        ...

    def generation(self) -> int:
        """How many erasures this store has seen."""
        ...

    def ensure(self, new: Mapping[str, tuple[bytes, bytes]]) -> dict[str, bytes]:
        """Store ``key id -> (key, sealed own value)`` where no key is stored yet; the keys
        now stored for those ids (another process's, where it came first)."""
        ...

    def keys(self, ids: Iterable[str]) -> dict[str, bytes]:
        """The keys stored for ``ids`` (destroyed or unknown ones are left out)."""
        ...

    def identities(self, ids: Iterable[str]) -> dict[str, tuple[bytes, bytes]]:
        """``key id -> (key, sealed own value)`` for the ids still stored."""
        ...

    def destroy(self, ids: Iterable[str]) -> Destroyed:
        """Delete the keys of ``ids`` for good (overwritten on disk, journal emptied) and
        count an erasure."""
        ...

    def close(self) -> None: ...
