"""Wire bytes to validated events: the one decode of ingestion, for HTTP bodies, the NDJSON
lines of a backfill and the records of the Kafka inbound topic.

Every item goes through the registry. When every item of a body or a run of documents is
a valid current-version event (the common case), the registry's fast path decodes them
all in one pass into pydantic-core; otherwise they are decoded one by one
(``_one_by_one``), which names every invalid item and its reasons by its 0-based index in
the input. Either way the valid events come out in input order. Callers turn an index
into their own report: the HTTP API answers an ``ItemError`` per index (422), the CLI
writes the line's number to its rejects file, the inbound agent dead-letters the record.

A body (``decode_body``) is one JSON object, a JSON array, or NDJSON: a body that holds
no items (empty, malformed JSON) is ``unreadable``, with a document that names why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from events.encoded import EncodedBatch
from events.models import Event
from events.registry import EventRegistry, FieldError, InvalidEvent

MAX_REPORTED = 100  # malformed NDJSON lines listed in one error


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why item ``index`` (0-based, in the order received) of a batch was refused."""

    index: int
    errors: list[FieldError]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "errors": [error.as_dict() for error in self.errors]}


@dataclass(slots=True)
class Decoded:
    """Items decoded: the valid ones as events, in input order, and the invalid ones."""

    events: list[Event] = field(default_factory=list)
    invalid: list[ItemError] = field(default_factory=list)


def decode_documents(documents: Sequence[bytes], registry: EventRegistry) -> Decoded:
    """One JSON document per item (a line of NDJSON, the value of a Kafka record).
    A document that is not JSON is an invalid item (``malformed JSON: ...``)."""
    if not documents:
        return Decoded()
    events = registry.fast_decode_lines(documents)
    if events is not None:
        return Decoded(events)
    return _one_by_one(documents, registry.decode_json)


def validate_items(items: Sequence[Any], registry: EventRegistry) -> Decoded:
    """Parsed JSON values, one per item."""
    return _one_by_one(items, registry.validate)


def _one_by_one(items: Sequence[Any], decode: Callable[[Any], Event]) -> Decoded:
    decoded = Decoded()
    for index, item in enumerate(items):
        try:
            decoded.events.append(decode(item))
        except InvalidEvent as error:
            decoded.invalid.append(ItemError(index, error.errors))
    return decoded


# --- bodies: one object, an array, or NDJSON ----------------------------------------------


class UnreadableBody(ValueError):
    """A body that holds no items: empty, or not JSON. ``document`` names what is wrong
    (``error``, ``detail`` and where: line, column, offset, or the malformed NDJSON lines)."""

    def __init__(self, error: str, detail: str, **where: Any):
        self.document = {"error": error, "detail": detail, **where}
        super().__init__(detail)


@dataclass(slots=True)
class DecodedBody:
    """What a body held: an encoded batch when every item is valid, else the invalid items
    (then nothing of the body may be stored), or why it holds none. Plain data, cheap to
    send back from a decoding process."""

    count: int = 0  # items in the body
    batch: EncodedBatch = field(default_factory=EncodedBatch)
    invalid: list[ItemError] = field(default_factory=list)
    unreadable: dict[str, Any] | None = None  # ``UnreadableBody.document``


def decode_body(body: bytes, ndjson: bool, registry: EventRegistry) -> DecodedBody:
    """Parse a body, validate every item, and encode the batch if all are valid."""
    events = _all_valid_fast(body, ndjson, registry)
    if events is None:
        try:
            items = parse_items(body, ndjson=ndjson)
        except UnreadableBody as error:
            return DecodedBody(unreadable=error.document)
        decoded = validate_items(items, registry)
        if decoded.invalid:
            return DecodedBody(count=len(items), invalid=decoded.invalid)
        events = decoded.events
    result = DecodedBody(count=len(events))
    result.batch.extend(events)
    return result


def _all_valid_fast(body: bytes, ndjson: bool, registry: EventRegistry) -> list[Event] | None:
    """The events of a body whose every item is a valid current-version event, decoded
    without building dicts in Python; None sends the body down the item-by-item path,
    which answers malformed, empty or invalid bodies exactly."""
    if not ndjson:
        return registry.fast_decode_array(body) if body.lstrip()[:1] == b"[" else None
    return registry.fast_decode_lines(line for line in body.split(b"\n") if line.strip())


def parse_items(body: bytes, *, ndjson: bool) -> list[Any]:
    """The items of a body: a JSON object is one item, an array its elements, NDJSON one
    per non-blank line. Empty bodies and empty arrays are ``UnreadableBody``."""
    if not body.strip():
        raise UnreadableBody("empty_body", "the request body is empty; send one event, an array or NDJSON")
    if ndjson:
        return _parse_ndjson(body)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise UnreadableBody(
            "malformed_json", f"malformed JSON at line {error.lineno}, column {error.colno} "
            f"(byte offset {error.pos}): {error.msg}", line=error.lineno, column=error.colno, offset=error.pos,
        ) from None
    if isinstance(document, list):
        if not document:
            raise UnreadableBody("empty_body", "the JSON array is empty; send at least one event")
        return document
    return [document]


def _parse_ndjson(body: bytes) -> list[Any]:
    items: list[Any] = []
    malformed: list[dict[str, Any]] = []
    loads = orjson.loads
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append(loads(line))
        except orjson.JSONDecodeError as error:
            if len(malformed) < MAX_REPORTED:
                malformed.append({"line": number, "column": error.colno, "reason": error.msg})
    if malformed:
        first = malformed[0]
        raise UnreadableBody(
            "malformed_json", f"malformed JSON on NDJSON line {first['line']}, column {first['column']}: "
            f"{first['reason']}" + (f" (and {len(malformed) - 1} more lines)" if len(malformed) > 1 else ""),
            malformed=malformed,
        )
    if not items:
        raise UnreadableBody("empty_body", "the NDJSON body has no events")
    return items
