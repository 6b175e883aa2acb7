"""``/v1/events`` (ingest and read the log) and ``/v1/schemas`` (the JSON Schema of every type)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.concurrency import run_in_threadpool

from consumers.api.auth import emit_refusal
from consumers.api.body import (
    NDJSON_TYPES,
    BodyError,
    check_media_type,
    decode_content,
    media_type,
    read_limited,
)
from consumers.api.docs import (
    EXAMPLE_EVENT,
    ConflictingDuplicates as ConflictDocument,
    ErrorDocument,
    IngestAccepted,
    InvalidEvents,
    LogPage,
    MalformedBody,
)
from application.decode import MAX_REPORTED, DecodedBody
from application.ingest import ConflictingDuplicates, Ingestor
from application.privacy.policy import Sealing
from application.privacy.reading import open_log_page
from events.times import utc_text
from events.registry import EventRegistry, InvalidEvent
from events.store import EventStore, RecordedEvent

MAX_PAGE = 10_000
MAX_POSITION = 2**63 - 1  # positions are SQLite integers (signed 64 bits): beyond, a 422 rather than a 500

router = APIRouter(tags=["events"])


def json_response(document: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type="application/json")


@router.post(
    "/v1/events",
    summary="Ingest touchpoint events (one object, a JSON array, or NDJSON)",
    description=(
        "The request is validated whole before anything is stored: if any item is invalid the answer "
        "is 422 listing the first 100 bad items by index, field and reason (and how many there are), and "
        "nothing of the request is stored. `occurred_at` must be an RFC 3339 time with an offset, from "
        "1990-01-01T00:00:00Z to 24 hours after the request is received. "
        "`event_id` is the idempotency key: an id already stored (or repeated in the request) with the same "
        "content is reported as a duplicate with the original position and not written again, so retries "
        "are safe; with other content the answer is 409 naming the original, and nothing is stored. "
        "`Content-Type` must be JSON or NDJSON (415 otherwise, a missing one too). "
        "Bodies may be sent with `Content-Encoding: gzip`; the size limit applies to the decompressed body."
    ),
    response_model=None,
    responses={
        200: {"model": IngestAccepted, "description": "Every item stored or recognised as a duplicate"},
        400: {"model": MalformedBody, "description": "Malformed JSON (line/offset named) or an empty body"},
        408: {"model": ErrorDocument, "description": "The body did not arrive within TOUCHPOINTS_BODY_TIMEOUT; "
                    "nothing was stored"},
        409: {"model": ConflictDocument, "description": "An event_id already stored (or earlier in the request) "
                    "came again with other content; nothing was stored"},
        413: {"model": ErrorDocument, "description": "Body (decompressed) larger than TOUCHPOINTS_MAX_BODY_BYTES"},
        415: {"model": ErrorDocument, "description": "Content-Type not JSON/NDJSON, or an unknown Content-Encoding"},
        422: {"model": InvalidEvents, "description": "Some items are invalid; nothing was stored"},
        429: {"model": ErrorDocument, "description": "Ingestion is behind (TOUCHPOINTS_INGEST_MAX_PENDING_BYTES); "
                    "nothing was stored: retry after `Retry-After` seconds (also `X-RateLimit-Reset`)"},
        503: {"model": ErrorDocument, "description": "The event store is unavailable; retry later"},
        507: {"model": ErrorDocument, "description": "The event store is full (disk or size limit); nothing was stored"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
                    "example": [EXAMPLE_EVENT],
                },
                **{kind: {"schema": {"type": "string"}, "example": orjson.dumps(EXAMPLE_EVENT).decode() + "\n"}
                   for kind in NDJSON_TYPES[:1]},
            },
        }
    },
)
async def post_events(request: Request) -> Response:
    state = request.app.state
    try:
        ndjson = check_media_type(media_type(request.headers.get("content-type")))
        limit = state.settings.max_body_bytes
        body = await read_limited(request.stream(), request.headers.get("content-length"), limit,
                                  timeout=state.settings.body_timeout)
        body = decode_content(body, request.headers.get("content-encoding"), limit)
    except BodyError as error:
        response = json_response(error.document, error.status)
        if error.status == 408:  # the rest of the body may still be on its way: no next request follows
            response.headers["connection"] = "close"
        return response
    except ClientDisconnect:  # gone before its body arrived: nothing stored, no one to answer
        return json_response({"error": "client_disconnected", "detail": "the client left before its body arrived",
                              "accepted": 0}, 400)
    decoded = await state.body_decoder.decode(body, ndjson)
    refused = emit_refusal(request, decoded)  # an emit key narrowed to a source and types
    if refused is not None:
        return refused
    status, document = await run_in_threadpool(ingest_decoded, state.ingestor, decoded)
    return json_response(document, status)


def ingest_decoded(ingestor: Ingestor, decoded: DecodedBody) -> tuple[int, dict[str, Any]]:
    """Append a decoded body whole (or nothing, if any item was invalid): the HTTP status
    and response document."""
    if decoded.unreadable is not None:
        return 400, {**decoded.unreadable, "accepted": 0}
    if decoded.invalid:
        listed = len(decoded.invalid)
        shown = f" (the first {listed} are listed)" if listed < decoded.invalid_count else ""
        return 422, {
            "error": "invalid_events",
            "detail": f"{decoded.invalid_count} of {decoded.count} events are invalid{shown}; nothing was stored",
            "invalid": [item.as_dict() for item in decoded.invalid],
            "invalid_count": decoded.invalid_count,
            "accepted": 0,
        }
    batch = decoded.batch
    try:
        outcomes = ingestor.append_encoded(batch, refuse_conflicts=True)
    except ConflictingDuplicates as conflict:
        return 409, conflict_document(conflict)
    results = [
        {
            "event_id": uuid_text(event_id),
            "position": position,
            "stream": stream,
            "stream_version": version,
            "duplicate": duplicate,
        }
        for event_id, stream, position, version, duplicate in zip(
            batch.ids, batch.streams, outcomes.positions, outcomes.versions, outcomes.duplicates
        )
    ]
    duplicates = outcomes.duplicate_count
    return 200, {"accepted": len(outcomes) - duplicates, "duplicates": duplicates, "results": results}


def conflict_document(conflict: ConflictingDuplicates) -> dict[str, Any]:
    """The 409 answer: each event id sent again with other content, with where its original is."""
    listed = conflict.conflicts[:MAX_REPORTED]
    first = listed[0]
    where = f"position {first.position}" if first.position is not None else f"item {first.first_index} of this request"
    stored = ("the request's other events were stored (this store appends stream by stream)"
              if conflict.stored_anyway else "nothing was stored")
    return {
        "error": "conflicting_duplicate",
        "detail": f"{len(conflict.conflicts)} event_id(s) were sent again with other content (item {first.index}: "
        f"{first.event_id}, the original at {where}); {stored}. A retry must send the same event; "
        "a new event needs a new event_id",
        "conflicts": [item.as_dict() for item in listed],
        "conflict_count": len(conflict.conflicts),
        "accepted": 0,
    }


def uuid_text(event_id: bytes) -> str:
    """``str(UUID(bytes=event_id))`` at half the cost (no UUID object): answers list every event."""
    h = event_id.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@router.get(
    "/v1/events",
    summary="Read the log in global order",
    description=(
        "Events with `position >= from_position`, oldest first, each with its stream, stream version, "
        "`recorded_at` (when the log learned it) and the event in wire form. Positions are ordered but "
        "not dense: page with `next_position`."
    ),
    response_model=None,
    responses={200: {"model": LogPage}},
)
async def get_events(
    request: Request,
    from_position: int = Query(0, ge=0, le=MAX_POSITION, description="first global position to return (inclusive)"),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description=f"events per page (1-{MAX_PAGE})"),
) -> Response:
    state = request.app.state
    document = await asyncio.get_running_loop().run_in_executor(
        state.log_reads, read_page, state.store, state.registry, from_position, limit, state.sealing
    )
    return json_response(document)


def read_page(
    store: EventStore, registry: EventRegistry, from_position: int, limit: int, sealing: Sealing | None = None
) -> dict[str, Any]:
    """A page of the log; with ``sealing``, each event holding sealed values also gets
    them opened beside it (``personal``), the event staying as stored."""
    recorded = list(store.read_all(from_position, limit=limit + 1))
    more = len(recorded) > limit
    page = recorded[:limit]
    next_position = page[-1].position + 1 if page else from_position
    recorded_texts: dict[datetime, str] = {}  # the events of one append share their recorded_at
    events = [_logged_document(record, registry, recorded_texts) for record in page]
    if sealing is not None:
        open_log_page(events, page, sealing, registry)
    return {
        "events": events,
        "next_position": next_position,
        "has_more": more,
    }


def _logged_document(
    record: RecordedEvent, registry: EventRegistry, recorded_texts: dict[datetime, str]
) -> dict[str, Any]:
    recorded_at = recorded_texts.get(record.recorded_at)
    if recorded_at is None:
        recorded_at = recorded_texts[record.recorded_at] = utc_text(record.recorded_at)
    document = {
        "position": record.position,
        "stream": record.stream,
        "stream_version": record.stream_version,
        "recorded_at": recorded_at,
        "hash": record.hash.hex() if record.hash is not None else None,
    }
    try:
        document["event"] = orjson.Fragment(registry.stored_wire(record.type, record.schema_version, record.data))
    except InvalidEvent as error:  # e.g. a plugin type no longer installed: show what is stored
        document["event"] = None
        document["stored"] = {"type": record.type, "schema_version": record.schema_version,
                              "data": _stored_data(record.data)}
        document["decode_error"] = str(error)
    return document


def _stored_data(data: bytes) -> Any:
    """A stored body as JSON where it is JSON, else as text (the answer stays valid JSON)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", errors="replace")
    return orjson.Fragment(data)


@router.get(
    "/v1/schemas",
    summary="JSON Schema of every registered event type",
    tags=["schemas"],
    response_model=None,
    responses={200: {"description": "schemas keyed by type name; `x-schema-version` is the current version"}},
)
async def get_schemas(request: Request) -> Response:
    return json_response(request.app.state.registry.json_schemas())


@router.get(
    "/v1/schemas/{type_name}",
    summary="JSON Schema of one event type",
    tags=["schemas"],
    response_model=None,
    responses={404: {"model": ErrorDocument, "description": "No such event type"}},
)
async def get_schema(request: Request, type_name: str = Path(description="wire name, e.g. `ad_clicked`")) -> Response:
    registry: EventRegistry = request.app.state.registry
    schemas = registry.json_schemas()
    if type_name not in schemas:
        return json_response(
            {"error": "unknown_type", "detail": f"unknown event type {type_name!r}", "known": sorted(schemas)}, 404
        )
    return json_response(schemas[type_name])
