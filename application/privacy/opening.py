"""Opening: what a person-level reader gets instead of tokens.

``Opener.open_document`` walks a JSON-ready document (a timeline, a page of the log, a
view's rows for whoever holds the keys) and replaces every token it holds (``pii1.…``, alone or in a stream name such as
``anonymous-pii1.…``) by its value where the key still exists, and by ``erased:<token>``
where it does not. Values come from the events given (their ``sealed`` maps, opened with
their subject's key) and else from the key store's identity rows. Nothing opened is kept:
a document is opened for one answer, so after an erasure no cache holds the values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryptography.exceptions import InvalidTag

from application.privacy.keys import KeyStore
from application.privacy.pseudonyms import ANONYMOUS_STREAM, CUSTOMER_STREAM, ERASED, is_token, subject_key_id
from application.privacy.sealing import decrypt
from events.logged import LoggedEvent

_PREFIXES = (CUSTOMER_STREAM, ANONYMOUS_STREAM)


class Opener:
    def __init__(self, keys: KeyStore):
        self.keys = keys
        self.pepper = keys.pepper()

    def open_document(self, document: Any, events: Iterable[LoggedEvent] = ()) -> Any:
        """``document`` with every token replaced (a new document; the given one is untouched)."""
        wanted: set[str] = set()
        _collect(document, wanted)
        if not wanted:
            return document
        values = self.values(wanted, events)
        return _replace(document, values)

    def values(self, tokens: set[str], events: Iterable[LoggedEvent] = ()) -> dict[str, str]:
        """``token -> value``, or ``erased:<token>`` where no key opens it."""
        values: dict[str, str] = {}
        sealed_by_subject: dict[str, list[tuple[str, str]]] = {}
        for logged in events:
            event = logged.event
            if not event.sealed:
                continue
            subject = subject_key_id(self.pepper, event.customer_id, event.anonymous_id)
            if subject is not None:
                sealed_by_subject.setdefault(subject, []).extend(
                    (token, text) for token, text in event.sealed.items() if token in tokens
                )
        keys = self.keys.keys(sealed_by_subject) if sealed_by_subject else {}
        for subject, pairs in sealed_by_subject.items():
            key = keys.get(subject)
            if key is None:
                continue
            for token, text in pairs:
                if token not in values:
                    try:
                        values[token] = decrypt(key, text, subject.encode(), token.encode())
                    except (InvalidTag, ValueError):  # not sealed by this platform: left unopened
                        pass
        rest = [token for token in tokens if token not in values]
        for key_id, (key, identity) in self.keys.identities(rest).items() if rest else ():
            try:
                values[key_id] = decrypt(key, identity.decode(), b"identity", key_id.encode())
            except (InvalidTag, ValueError):
                pass
        for token in tokens:
            values.setdefault(token, ERASED + token)
        return values


def _token_in(text: str) -> str | None:
    if is_token(text):
        return text
    for prefix in _PREFIXES:
        if text.startswith(prefix) and is_token(text[len(prefix):]):
            return text[len(prefix):]
    return None


def _collect(node: Any, found: set[str]) -> None:
    if type(node) is str:
        token = _token_in(node)
        if token is not None:
            found.add(token)
    elif isinstance(node, dict):
        for value in node.values():
            _collect(value, found)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _collect(value, found)


def _replace(node: Any, values: dict[str, str]) -> Any:
    if type(node) is str:
        token = _token_in(node)
        return node if token is None else node[: len(node) - len(token)] + values[token]
    if isinstance(node, dict):
        return {key: _replace(value, values) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_replace(value, values) for value in node]
    return node
