"""Response shapes of the ingestion API, for the OpenAPI document (``/docs``) only.

Handlers build their JSON with orjson directly (speed); these models describe it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_EVENT: dict[str, Any] = {
    "event_id": "0b7f7a52-3c7e-4d4e-9a4c-5a3e2f1d9c10",
    "type": "ad_clicked",
    "occurred_at": "2024-05-02T09:30:00Z",
    "anonymous_id": "cookie:3f9a1c2b7d4e8f60",
    "channel": "google_ads",
    "campaign": "spring-launch-2024",
    "source": "ads-connector",
    "data": {"ad_id": "ad-17", "cost": "0.42", "currency": "EUR"},
}


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class AppendedEvent(_Doc):
    event_id: str
    position: int = Field(description="global position in the log (ordered, not dense)")
    stream: str = Field(description="identity stream, e.g. `customer-42` or `anonymous-cookie:...`")
    stream_version: int = Field(description="0-based version within the stream")
    duplicate: bool = Field(description="already stored: position and version are the original's")


class IngestAccepted(_Doc):
    model_config = ConfigDict(json_schema_extra={"example": {
        "accepted": 1, "duplicates": 0,
        "results": [{"event_id": EXAMPLE_EVENT["event_id"], "position": 1042, "stream": "anonymous-cookie:3f9a1c2b7d4e8f60",
                     "stream_version": 3, "duplicate": False}],
    }})

    accepted: int = Field(description="events newly stored")
    duplicates: int = Field(description="events whose event_id was already stored or repeated in the request")
    results: list[AppendedEvent] = Field(description="one entry per item, in request order")


class FieldProblem(_Doc):
    field: str = Field(description="dotted path of the field, e.g. `data.revenue`")
    reason: str


class InvalidItem(_Doc):
    index: int = Field(description="0-based position of the item in the request")
    errors: list[FieldProblem]


class InvalidEvents(_Doc):
    model_config = ConfigDict(json_schema_extra={"example": {
        "error": "invalid_events", "detail": "1 of 2 events are invalid; nothing was stored",
        "invalid": [{"index": 1, "errors": [{"field": "occurred_at", "reason": "Input should have timezone info"}]}],
        "accepted": 0,
    }})

    error: Literal["invalid_events"]
    detail: str
    invalid: list[InvalidItem] = Field(description="every invalid item")
    accepted: Literal[0]


class ErrorDocument(_Doc):
    error: str = Field(description="machine-readable code, e.g. `body_too_large`")
    detail: str = Field(description="what went wrong, for people")


class MalformedBody(ErrorDocument):
    line: int | None = Field(None, description="JSON: line of the first syntax error")
    column: int | None = None
    offset: int | None = Field(None, description="JSON: byte offset of the first syntax error")
    malformed: list[dict[str, Any]] | None = Field(None, description="NDJSON: every bad line with its reason")


class LoggedEventDocument(_Doc):
    position: int
    stream: str
    stream_version: int
    recorded_at: str = Field(description="when the log learned the event (UTC)")
    hash: str | None = Field(description="hash-chain entry (hex), null where the store keeps none")
    event: dict[str, Any] = Field(description="the event in wire form", examples=[EXAMPLE_EVENT])


class LogPage(_Doc):
    events: list[LoggedEventDocument]
    next_position: int = Field(description="pass as `from_position` to read on")
    has_more: bool = Field(description="more events were already stored beyond this page")


class ComponentHealth(_Doc):
    status: Literal["ok", "degraded", "down", "catching_up", "starting"] = Field(
        description="`catching_up` / `starting`: on its way to `ok` (e.g. the views behind the log's head), "
        "not a fault")


class Health(_Doc):
    model_config = ConfigDict(json_schema_extra={"example": {
        "status": "ok", "ready": False,
        "components": {"store": {"status": "ok", "url": "sqlite:///data/events.db", "count": 51234,
                                 "head_position": 51234},
                       "views": {"status": "catching_up", "position": 51000, "head": 51234, "behind": 234,
                                 "folded": 51234}},
    }})

    status: Literal["ok", "degraded"] = Field(description="`degraded` when a component is degraded or down")
    ready: bool = Field(description="every component `ok`: the views caught up with the log's head")
    components: dict[str, ComponentHealth]
