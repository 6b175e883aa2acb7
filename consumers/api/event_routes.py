"""``/v1/events`` (ingest and read the log) and ``/v1/schemas`` (the JSON Schema of every type)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

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
    ErrorDocument,
    IngestAccepted,
    InvalidEvents,
    LogPage,
    MalformedBody,
)
from application.decode import DecodedBody
from application.ingest import Ingestor
from events.times import utc_text
from events.registry import EventRegistry, InvalidEvent
from events.store import EventStore, RecordedEvent

MAX_PAGE = 10_000

router = APIRouter(tags=["events"])


def json_response(document: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type="application/json")


@router.post(
    "/v1/events",
    summary="Ingest touchpoint events (one object, a JSON array, or NDJSON)",
    description=(
        "The request is validated whole before anything is stored: if any item is invalid the answer "
        "is 422 listing every bad item by index, field and reason, and nothing of the request is stored. "
        "`event_id` is the idempotency key: an id already stored (or repeated in the request) is reported "
        "as a duplicate with the original position and not written again, so retries are safe. "
        "Bodies may be sent with `Content-Encoding: gzip`; the size limit applies to the decompressed body."
    ),
    response_model=None,
    responses={
        200: {"model": IngestAccepted, "description": "Every item stored or recognised as a duplicate"},
        400: {"model": MalformedBody, "description": "Malformed JSON (line/offset named) or an empty body"},
        413: {"model": ErrorDocument, "description": "Body (decompressed) larger than TOUCHPOINTS_MAX_BODY_BYTES"},
        415: {"model": ErrorDocument, "description": "Content-Type not JSON/NDJSON, or an unknown Content-Encoding"},
        422: {"model": InvalidEvents, "description": "Some items are invalid; nothing was stored"},
        503: {"model": ErrorDocument, "description": "The event store is unavailable; retry later"},
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
        body = await read_limited(request.stream(), request.headers.get("content-length"), limit)
        body = decode_content(body, request.headers.get("content-encoding"), limit)
    except BodyError as error:
        return json_response(error.document, error.status)
    decoded = await state.body_decoder.decode(body, ndjson)
    status, document = await run_in_threadpool(ingest_decoded, state.ingestor, decoded)
    return json_response(document, status)


def ingest_decoded(ingestor: Ingestor, decoded: DecodedBody) -> tuple[int, dict[str, Any]]:
    """Append a decoded body whole (or nothing, if any item was invalid): the HTTP status
    and response document."""
    if decoded.unreadable is not None:
        return 400, {**decoded.unreadable, "accepted": 0}
    if decoded.invalid:
        return 422, {
            "error": "invalid_events",
            "detail": f"{len(decoded.invalid)} of {decoded.count} events are invalid; nothing was stored",
            "invalid": [item.as_dict() for item in decoded.invalid],
            "accepted": 0,
        }
    batch = decoded.batch
    outcomes = ingestor.append_encoded(batch)
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
    from_position: int = Query(0, ge=0, description="first global position to return (inclusive)"),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description=f"events per page (1-{MAX_PAGE})"),
) -> Response:
    state = request.app.state
    document = await asyncio.get_running_loop().run_in_executor(
        state.log_reads, read_page, state.store, state.registry, from_position, limit
    )
    return json_response(document)


def read_page(store: EventStore, registry: EventRegistry, from_position: int, limit: int) -> dict[str, Any]:
    recorded = list(store.read_all(from_position, limit=limit + 1))
    more = len(recorded) > limit
    page = recorded[:limit]
    next_position = page[-1].position + 1 if page else from_position
    recorded_texts: dict[datetime, str] = {}  # the events of one append share their recorded_at
    return {
        "events": [_logged_document(record, registry, recorded_texts) for record in page],
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
