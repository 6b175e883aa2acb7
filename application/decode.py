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

Accepted times (``AcceptedTimes``): ingestion refuses an ``occurred_at`` before 1990-01-01
UTC or more than 24 hours after the moment the input was received (``received_at``,
default: when it is decoded), naming the field and the range. One event dated 9999 would
otherwise become every view's "now"; history older than the commercial web is a wrong
clock, not a touchpoint. The check belongs to ingestion only: the models accept any
representable time, so events already in the log (written before this rule, or upcast)
always read back, replay and verify.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from typing import Any

import orjson

from events.encoded import EncodedBatch
from events.models import Event
from events.registry import EventRegistry, FieldError, InvalidEvent

MAX_REPORTED = 100  # malformed NDJSON lines, or invalid items of a body, listed in one error
EARLIEST_OCCURRED_AT = datetime(1990, 1, 1, tzinfo=timezone.utc)
MAX_AHEAD = timedelta(hours=24)  # emitters' clocks run ahead; a day covers any time zone mistake


@dataclass(frozen=True, slots=True)
class AcceptedTimes:
    """The ``occurred_at`` range ingestion accepts for input received at one moment."""

    earliest: datetime
    latest: datetime

    @classmethod
    def received(cls, received_at: datetime | None = None) -> "AcceptedTimes":
        """The range for input received at ``received_at`` (default: now)."""
        moment = received_at if received_at is not None else datetime.now(timezone.utc)
        return cls(EARLIEST_OCCURRED_AT, moment + MAX_AHEAD)

    def hold_all(self, events: list[Event]) -> bool:
        """Whether every event lies in the range: one min and one max over the batch (the
        events of a body share one tzinfo object, so their comparisons stay cheap)."""
        if not events:
            return True
        times = list(map(_OCCURRED_AT, events))
        return self.earliest <= min(times) and max(times) <= self.latest

    def check(self, event: Event) -> Event:
        """``event``, or ``InvalidEvent`` naming ``occurred_at`` and the range."""
        if self.earliest <= event.occurred_at <= self.latest:
            return event
        raise InvalidEvent([FieldError("occurred_at", self.reason(event.occurred_at))])

    def reason(self, moment: datetime) -> str:
        return (f"{moment.isoformat()} is outside the accepted range: from {self.earliest.isoformat()} "
                f"to {self.latest.isoformat()} (24 hours after the input was received)")


_OCCURRED_AT = attrgetter("occurred_at")


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


def decode_documents(
    documents: Sequence[bytes], registry: EventRegistry, *, received_at: datetime | None = None
) -> Decoded:
    """One JSON document per item (a line of NDJSON, the value of a Kafka record), received
    at ``received_at`` (default: now). A document that is not JSON is an invalid item
    (``malformed JSON: ...``)."""
    if not documents:
        return Decoded()
    accepted = AcceptedTimes.received(received_at)
    events = registry.fast_decode_lines(documents)
    if events is not None and accepted.hold_all(events):
        return Decoded(events)
    return _one_by_one(documents, registry.decode_json, accepted)


def validate_items(items: Sequence[Any], registry: EventRegistry, *, received_at: datetime | None = None) -> Decoded:
    """Parsed JSON values, one per item, received at ``received_at`` (default: now)."""
    return _one_by_one(items, registry.validate, AcceptedTimes.received(received_at))


def _one_by_one(items: Sequence[Any], decode: Callable[[Any], Event], accepted: AcceptedTimes) -> Decoded:
    decoded = Decoded()
    check = accepted.check
    for index, item in enumerate(items):
        try:
            decoded.events.append(check(decode(item)))
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
    """What a body held: an encoded batch when every item is valid, else the first
    ``MAX_REPORTED`` invalid items and how many there are (then nothing of the body may be
    stored), or why it holds none. Plain data, cheap to send back from a decoding process
    (a body of 200,000 bad items reports 100 of them, not an answer of megabytes)."""

    count: int = 0  # items in the body
    batch: EncodedBatch = field(default_factory=EncodedBatch)
    invalid: list[ItemError] = field(default_factory=list)  # the first MAX_REPORTED
    invalid_count: int = 0  # every invalid item
    unreadable: dict[str, Any] | None = None  # ``UnreadableBody.document``


def decode_body(
    body: bytes, ndjson: bool, registry: EventRegistry, *, received_at: datetime | None = None
) -> DecodedBody:
    """Parse a body received at ``received_at`` (default: now), validate every item, and
    encode the batch if all are valid."""
    accepted = AcceptedTimes.received(received_at)
    events = _all_valid_fast(body, ndjson, registry)
    if events is None or not accepted.hold_all(events):
        try:
            items = parse_items(body, ndjson=ndjson)
        except UnreadableBody as error:
            return DecodedBody(unreadable=error.document)
        decoded = _one_by_one(items, registry.validate, accepted)
        if decoded.invalid:
            return DecodedBody(count=len(items), invalid=decoded.invalid[:MAX_REPORTED],
                               invalid_count=len(decoded.invalid))
        events = decoded.events
    result = DecodedBody(count=len(events))
    result.batch.extend(registry.ingest_ready(events))
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
