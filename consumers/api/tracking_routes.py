"""The tracking API: Segment-spec ``track``, ``identify``, ``page``, ``screen``, ``group``,
``alias`` and ``batch`` (``/v1/...`` and the browser library's short paths ``/t`` ... ``/b``),
answered as Segment's and RudderStack's SDKs expect.

A request goes the way of ``POST /v1/events``: its messages are mapped to wire events
(``application.tracking``), then decoded, checked against the key's narrowing and appended
by the one ingest path (``BodyDecoder`` → ``Ingestor.append_encoded``), whole or not at
all. A message id stored before is a duplicate whatever its content (Segment's rule: the
first message wins), where ``POST /v1/events`` answers 409 to an id sent with other content.

Answers: 200 ``{"success": true}`` when stored (retries of stored messages are duplicates,
also 200); 400 naming each bad message by ``index`` (and ``messageId``); 401 / 403 (the
write key: HTTP Basic user name with an empty password, or ``writeKey`` in the body, an
``emit`` key); 413 beyond 32 KB a message or 500 KB a request; 429 with ``Retry-After``
and ``X-RateLimit-Reset`` from admission control. Browsers send ``Content-Type: text/plain``
to avoid a CORS preflight: any content type is read as JSON, and every answer allows any
origin (the key is in the body, no cookie is read).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from application.access import Principal, Scope
from application.access.narrowing import refusal_document, refusals
from application.tracking import MessageError, TrackingConfig, to_event
from consumers.api.auth import authenticate, require
from consumers.api.body import BodyError, decode_content, read_limited
from consumers.api.tracking_paths import PATH_TYPES

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}


def install_tracking(app: FastAPI, config: TrackingConfig | None = None) -> None:
    """Add the tracking routes; ``config`` None reads ``TrackingConfig.from_env()``."""
    app.state.tracking = config if config is not None else TrackingConfig.from_env()
    for path, kind in PATH_TYPES.items():
        app.add_api_route(
            path, post_tracking, methods=["POST"], tags=["tracking"], response_model=None,
            summary=f"Segment-spec {kind or 'batch'}" + (" (browser short path)" if not path.startswith("/v1") else ""),
            description="Messages of the Segment spec (RudderStack speaks it too); see the README's "
                        "'Sending from Segment or RudderStack SDKs' for how each becomes an event.",
            responses=RESPONSES, openapi_extra=_request_body(kind),
        )


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored (or recognised as a retry): `{\"success\": true}`"},
    400: {"description": "Malformed JSON or invalid messages, each named by `index` and `messageId`; nothing stored"},
    401: {"description": "No write key, or not a valid one"},
    403: {"description": "The key lacks `emit`, or is narrowed to other types or another source"},
    413: {"description": f"A message over {MAX_MESSAGE_BYTES} bytes or a request over {MAX_BATCH_BYTES} bytes"},
    429: {"description": "Ingestion is behind: retry after `Retry-After` seconds (also `X-RateLimit-Reset`)"},
}


def _request_body(kind: str | None) -> dict[str, Any]:
    message = {"type": "object", "properties": {"writeKey": {"type": "string"}, "messageId": {"type": "string"},
                                                  "userId": {"type": "string"}, "anonymousId": {"type": "string"}}}
    schema = message if kind else {"type": "object", "required": ["batch"], "properties": {
        "writeKey": {"type": "string"}, "batch": {"type": "array", "minItems": 1, "items": {"type": "object"}}}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema},
                                                           "text/plain": {"schema": {"type": "string"}}}}}


async def post_tracking(request: Request) -> Response:
    default_type = PATH_TYPES[request.scope["path"]]
    batch = default_type is None
    limit = MAX_BATCH_BYTES if batch else MAX_MESSAGE_BYTES
    try:
        body = await read_limited(request.stream(), request.headers.get("content-length"), limit)
        body = decode_content(body, request.headers.get("content-encoding"), limit)
    except BodyError as error:
        return answer({"success": False, **error.document}, error.status)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return failure(400, "malformed_json", f"malformed JSON at line {error.lineno}, column {error.colno}")
    if not isinstance(document, dict):
        return failure(400, "invalid_body", "the body must be a JSON object")
    write_key = document.get("writeKey")
    principal = authorize(request, write_key if isinstance(write_key, str) and write_key else None)
    messages: Any = document.get("batch") if batch else [document]
    if not isinstance(messages, list) or not messages:
        return failure(400, "invalid_body", "a batch needs a non-empty array 'batch' of messages")
    return await store_messages(request, principal, messages, None if batch else default_type)


def authorize(request: Request, write_key: str | None) -> Principal:
    """The principal of the body's ``writeKey``, else of the request's credentials (HTTP
    Basic user name); it must hold ``emit``. 401 / 403 through the app's handlers."""
    principal = authenticate(request, key=write_key) if write_key else authenticate(request)
    require(principal, Scope.EMIT, f"POST {request.scope['path']}")
    return principal


async def store_messages(
    request: Request, principal: Principal, messages: list[Any], default_type: str | None
) -> Response:
    state = request.app.state
    received_at = datetime.now(timezone.utc)
    # ~10 µs of CPU a message: off the event loop, as the decode of POST /v1/events is
    mapped = await run_in_threadpool(map_messages, messages, default_type, state.tracking, received_at)
    events, origins, invalid, oversized = mapped
    if oversized:
        return failure(413, "message_too_large", f"messages {oversized[:20]} exceed {MAX_MESSAGE_BYTES} bytes; "
                       "nothing was stored", indexes=oversized)
    if invalid:
        return invalid_messages(invalid, len(messages))
    if not events:
        return answer({"success": True})
    decoded = await state.body_decoder.decode(orjson.dumps(events), False)
    if decoded.invalid:
        return invalid_messages([_invalid(origins[item.index], messages[origins[item.index]],
                                          [error.as_dict() for error in item.errors]) for item in decoded.invalid],
                                len(messages))
    if principal.source is not None or principal.types is not None:
        found = refusals(principal, decoded.batch.types, decoded.batch.data)
        if found:
            return answer({"success": False, **refusal_document(principal, found, len(decoded.batch))}, 403)
    # First write wins, as Segment dedupes by messageId: a retry whose derived content differs
    # (occurred_at from the receive time) is a duplicate, not a conflict that would refuse the batch.
    await run_in_threadpool(state.ingestor.append_encoded, decoded.batch)
    return answer({"success": True})


def map_messages(
    messages: list[Any], default_type: str | None, config: TrackingConfig, received_at: datetime
) -> tuple[list[dict[str, Any]], list[int], list[dict[str, Any]], list[int]]:
    """The wire events of ``messages``, the message index of each, the invalid messages and
    the indexes of batch items over ``MAX_MESSAGE_BYTES``."""
    events: list[dict[str, Any]] = []
    origins: list[int] = []
    invalid: list[dict[str, Any]] = []
    oversized: list[int] = []
    for index, message in enumerate(messages):
        if default_type is None and len(orjson.dumps(message)) > MAX_MESSAGE_BYTES:
            oversized.append(index)
            continue
        try:
            event = to_event(message, received_at=received_at, config=config, default_type=default_type)
        except MessageError as error:
            invalid.append(_invalid(index, message, [{"field": error.field, "reason": error.reason}]))
            continue
        if event is not None:
            events.append(event)
            origins.append(index)
    return events, origins, invalid, oversized


def _invalid(index: int, message: Any, errors: list[dict[str, str]]) -> dict[str, Any]:
    message_id = message.get("messageId") if isinstance(message, dict) else None
    return {"index": index, "messageId": message_id, "errors": errors}


def invalid_messages(invalid: list[dict[str, Any]], count: int) -> Response:
    first = invalid[0]
    reason = "; ".join(f"{error['field']}: {error['reason']}" for error in first["errors"])
    return failure(400, "invalid_messages", f"{len(invalid)} of {count} messages are invalid (first: message "
                   f"{first['index']}: {reason}); nothing was stored", invalid=invalid)


def failure(status: int, error: str, detail: str, **extra: Any) -> Response:
    return answer({"success": False, "error": error, "detail": detail, **extra}, status)


def answer(document: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type="application/json",
                    headers=CORS_HEADERS)
