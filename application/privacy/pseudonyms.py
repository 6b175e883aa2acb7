"""Pseudonyms: the stable tokens a sealed field holds instead of its value.

``pii1.<22 base64url characters>`` is the first 128 bits of HMAC-SHA256(pepper, kind NUL
value), base64url: safe in URLs, stream names and Kafka keys. Equal values of one kind
always give the same token, so joins, identity links, stream names, Kafka keys and every
aggregate work on tokens exactly as on the values.
Whoever holds the pepper and a guess (an email address) can compute the guess's token and
find it in the log: erasure destroys the readable value, not the fact that some event
belonged to that token.
"""

from __future__ import annotations

import base64
import hmac

from events.models import Event
from events.personal import ANONYMOUS, CUSTOMER

PREFIX = "pii1."
TOKEN_LENGTH = len(PREFIX) + 22
ERASED = "erased:"  # what a reader sees where a token's key was destroyed
CUSTOMER_STREAM = "customer-"
ANONYMOUS_STREAM = "anonymous-"


def pseudonym(pepper: bytes, kind: str, value: str) -> str:
    digest = hmac.digest(pepper, kind.encode() + b"\0" + value.encode(), "sha256")
    return PREFIX + base64.urlsafe_b64encode(digest[:16])[:22].decode()


def is_token(text: object) -> bool:
    return type(text) is str and len(text) == TOKEN_LENGTH and text.startswith(PREFIX)


def subject_key_id(pepper: bytes, customer_id: str | None, anonymous_id: str | None) -> str | None:
    """The key an event's sealed values are encrypted with: its stream's identity (the
    customer's when the event names one, as ``Event.stream``). An unsealed customer id has a
    key too, under its pseudonym, so erasing that customer shreds the event's other fields."""
    if customer_id is not None:
        return customer_id if is_token(customer_id) else pseudonym(pepper, CUSTOMER, customer_id)
    if anonymous_id is not None and is_token(anonymous_id):
        return anonymous_id
    return None


def stream_key_id(pepper: bytes, stream: str) -> str | None:
    """The key of an identity stream (``customer-<id>``, ``anonymous-<token>``); None for a
    stream whose values were never sealed (appended before sealing was on)."""
    if stream.startswith(CUSTOMER_STREAM):
        return subject_key_id(pepper, stream[len(CUSTOMER_STREAM):], None)
    if stream.startswith(ANONYMOUS_STREAM):
        rest = stream[len(ANONYMOUS_STREAM):]
        return rest if is_token(rest) else None
    return None


def stored_forms(pepper: bytes, identity: str, *, customer_ids: bool) -> list[str]:
    """What a reader's ``identity`` (a customer id, an anonymous id, or a stream name, in
    plaintext) may be stored as, most specific first: what ``Population.resolve`` tries."""
    forms = [identity]
    for prefix, kind in ((CUSTOMER_STREAM, CUSTOMER), (ANONYMOUS_STREAM, ANONYMOUS)):
        if identity.startswith(prefix) and (kind == ANONYMOUS or customer_ids):
            forms.append(prefix + pseudonym(pepper, kind, identity[len(prefix):]))
    if customer_ids:
        forms.append(CUSTOMER_STREAM + pseudonym(pepper, CUSTOMER, identity))
    forms.append(ANONYMOUS_STREAM + pseudonym(pepper, ANONYMOUS, identity))
    return forms


def tokens_of(event: Event) -> list[str]:
    """The tokens an event holds: its identities', then those in ``data``, in field order."""
    values = (event.customer_id, event.anonymous_id, *event.data.__dict__.values())
    return list(dict.fromkeys(value for value in values if is_token(value)))
