"""Sealing: ingestion replaces each personal value by its pseudonym and keeps the value
encrypted under a key of the person's.

* An identity (an anonymous id; a customer id where those are personal) gets a key of its
  own on its first event, and the key store keeps its value beside the key, sealed with it:
  stored once, not in every event, so most events grow by a token's length only.
* Any other personal value (a handle, a ticket's text) goes into the event's ``sealed`` map
  (token -> ciphertext) under the key of the event's subject (``pseudonyms.subject_key_id``).

The encryption is AES-SIV (``cryptography``'s AEAD), deterministic: the same value sealed
with the same key gives the same bytes, so an event sent again is stored byte for byte as
the first time. The associated data binds a ciphertext to its key id and token, so it
opens only as the value of its own token.

One ``Sealer`` per process; it caches pseudonyms, keys and ciphertexts, and drops the
keys and ciphertexts when the store's erasure count moves (an erasure, in this process or
another, destroyed keys: nothing sealed with a destroyed key may be stored after it, so the
person's next event gets a new key). The count is read before a batch and again once it is
sealed; a batch during which it moved is sealed again: a batch handed on after an erasure
committed holds no key that erasure destroyed.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Sequence
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from pydantic import BaseModel

from application.privacy.keys import KeyStore
from application.privacy.mode import SealingMode, pin_mode
from application.privacy.pseudonyms import pseudonym
from events.models import Event
from events.personal import CUSTOMER, IDENTITY_KINDS, PersonalField, personal_fields

M = TypeVar("M", bound=BaseModel)
KEY_BYTES = 64  # AES-256-SIV
CACHE_LIMIT = 200_000  # entries per cache before it is emptied (a backfill of millions of people)


def encrypt(key: bytes | AESSIV, value: str, *associated: bytes) -> str:
    cipher = key if isinstance(key, AESSIV) else AESSIV(key)
    return base64.urlsafe_b64encode(cipher.encrypt(value.encode(), list(associated))).rstrip(b"=").decode()


def decrypt(key: bytes, text: str, *associated: bytes) -> str:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return AESSIV(key).decrypt(raw, list(associated)).decode()


def seal_identity(key: bytes, key_id: str, value: str) -> bytes:
    """An identity's own value as its key store row keeps it."""
    return encrypt(key, value, b"identity", key_id.encode()).encode()


_set = object.__setattr__


def replaced(model: M, changes: dict[str, object]) -> M:
    """``model.model_copy(update=changes)`` for our frozen models (no extra fields, no
    private attributes) at less than half its cost: the values are already valid, nothing is checked."""
    copy = object.__new__(type(model))
    values = model.__dict__.copy()
    values.update(changes)
    _set(copy, "__dict__", values)
    _set(copy, "__pydantic_fields_set__", model.__pydantic_fields_set__ | changes.keys())
    _set(copy, "__pydantic_extra__", None)
    _set(copy, "__pydantic_private__", None)
    return copy


class Sealer:
    """Seals events for one process, one batch at a time."""

    def __init__(self, keys: KeyStore, *, customer_ids: bool):
        self.keys = keys
        self.customer_ids = customer_ids
        pin_mode(keys, SealingMode(True, customer_ids))  # the log's mode, recorded by its first append
        self.pepper = keys.pepper()
        self._lock = threading.Lock()  # the API decodes small bodies on several threads
        self._generation = keys.generation()
        self._fields: dict[str, tuple[PersonalField, ...]] = {}
        self._tokens: dict[tuple[str, str], str] = {}
        self._keys: dict[str, bytes] = {}
        self._ciphertexts: dict[tuple[str, str], str] = {}

    def token(self, kind: str, value: str) -> str:
        found = self._tokens.get((kind, value))
        if found is None:
            if len(self._tokens) >= CACHE_LIMIT:
                self._tokens.clear()
            found = self._tokens[(kind, value)] = pseudonym(self.pepper, kind, value)
        return found

    def seal(self, events: Sequence[Event]) -> list[Event]:
        """The events with every personal value replaced by its token and ``sealed`` set
        where they hold other values than identities (an emitter's ``sealed`` is dropped)."""
        with self._lock:
            return self._seal(events)

    def _seal(self, events: Sequence[Event]) -> list[Event]:
        self._forget_erased()
        while True:
            sealed = self._seal_once(events)
            if not self._forget_erased():  # an erasure committed while sealing: seal again, with no old key
                return sealed

    def _seal_once(self, events: Sequence[Event]) -> list[Event]:
        plans = [self._plan(event) for event in events]
        self._load_keys([plan for plan in plans if plan is not None])
        return [
            (event if event.sealed is None else replaced(event, {"sealed": None})) if plan is None
            else self._sealed(event, plan[0], plan[2])
            for event, plan in zip(events, plans)
        ]

    def _plan(self, event: Event) -> tuple[str, str, list[tuple[PersonalField, str, str]]] | None:
        """(the subject's key id, the subject's value, the personal fields found with their
        tokens and values), or None when the event holds no personal value."""
        fields = self._fields.get(event.TYPE)
        if fields is None:
            fields = self._fields[event.TYPE] = personal_fields(event.TYPE, customer_ids=self.customer_ids)
        found = []
        for field in fields:
            holder = event.data if field.in_data else event
            value = getattr(holder, field.path[-1], None)
            if value is not None:
                found.append((field, self.token(field.kind, value), value))
        if not found:
            return None
        customer_id = event.customer_id
        if customer_id is not None:  # the key of an unsealed customer id is its pseudonym's too
            return self.token(CUSTOMER, customer_id), customer_id, found
        return found[0][1], found[0][2], found  # the anonymous id: always the first field

    def _load_keys(self, plans: list[tuple[str, str, list[tuple[PersonalField, str, str]]]]) -> None:
        """Make sure every subject and every identity named has a key cached: one store
        call for those not cached yet."""
        cached = self._keys
        if len(cached) > CACHE_LIMIT:
            cached.clear()
        missing: dict[str, str] = {}  # key id -> the identity's value
        for subject, subject_value, found in plans:
            if subject not in cached:
                missing[subject] = subject_value
            for field, token, value in found:
                if field.kind in IDENTITY_KINDS and token not in cached:
                    missing[token] = value
        if not missing:
            return
        random = os.urandom(KEY_BYTES * len(missing))  # one system call for all the new keys
        new = {}
        for start, (key_id, value) in zip(range(0, len(random), KEY_BYTES), missing.items()):
            key = random[start : start + KEY_BYTES]
            new[key_id] = (key, seal_identity(key, key_id, value))
        cached.update(self.keys.ensure(new))

    def _sealed(self, event: Event, subject: str, found: list[tuple[PersonalField, str, str]]) -> Event:
        key: AESSIV | None = None
        ciphertexts = self._ciphertexts
        sealed: dict[str, str] = {}
        envelope: dict[str, object] = {}
        data: dict[str, str] = {}
        for field, token, value in found:
            if field.in_data:
                data[field.path[-1]] = token
            else:
                envelope[field.path[0]] = token
            if field.kind in IDENTITY_KINDS:  # its value is in its key's row
                continue
            text = ciphertexts.get((subject, token))
            if text is None:
                if len(ciphertexts) >= CACHE_LIMIT:
                    ciphertexts.clear()
                if key is None:  # one cipher object per event at most (making one costs what encrypting does)
                    key = AESSIV(self._keys[subject])
                text = ciphertexts[(subject, token)] = encrypt(key, value, subject.encode(), token.encode())
            sealed[token] = text
        if data:
            envelope["data"] = replaced(event.data, data)
        envelope["sealed"] = sealed or None
        return replaced(event, envelope)

    def _forget_erased(self) -> bool:
        """Drop the cached keys and ciphertexts if an erasure happened since the last look (True then)."""
        generation = self.keys.generation()
        if generation == self._generation:
            return False
        self._generation = generation
        self._keys.clear()
        self._ciphertexts.clear()
        return True
