"""Response shapes of the ingestion API, for the OpenAPI document (``/docs``) only, and
``install_openapi``, which makes the document say what the server answers.

Handlers build their JSON with orjson directly (speed); these models describe it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PydanticUserError, TypeAdapter

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
        "invalid_count": 1, "accepted": 0,
    }})

    error: Literal["invalid_events"]
    detail: str
    invalid: list[InvalidItem] = Field(description="the first 100 invalid items, in request order")
    invalid_count: int = Field(description="every invalid item of the request")
    accepted: Literal[0]


class ConflictingItem(_Doc):
    index: int = Field(description="0-based position of the item in the request")
    event_id: str
    position: int | None = Field(None, description="where the log holds the event first sent with this id")
    first_index: int | None = Field(None, description="the earlier item of this request with this id")


class ConflictingDuplicates(_Doc):
    model_config = ConfigDict(json_schema_extra={"example": {
        "error": "conflicting_duplicate",
        "detail": "1 event_id(s) were sent again with other content (item 0: 0b7f7a52-..., the original at "
                  "position 1042); nothing was stored. A retry must send the same event; a new event needs a new "
                  "event_id",
        "conflicts": [{"index": 0, "event_id": EXAMPLE_EVENT["event_id"], "position": 1042}],
        "conflict_count": 1, "accepted": 0,
    }})

    error: Literal["conflicting_duplicate"]
    detail: str
    conflicts: list[ConflictingItem] = Field(description="the first 100 items whose event_id is taken")
    conflict_count: int
    accepted: Literal[0]


class InvalidParameter(_Doc):
    parameter: str = Field(description="name of the query or path parameter (dotted for nested fields)")
    reason: str
    in_: str = Field(alias="in", description="`query`, `path`, `header` or `body`")


class InvalidParameters(_Doc):
    """What every route answers for a bad parameter (the app's one error shape)."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "error": "invalid_parameters", "detail": "invalid parameter(s): lookback_days",
        "invalid": [{"parameter": "lookback_days", "in": "query",
                     "reason": "Input should be less than or equal to 36525"}],
    }})

    error: str = Field(description="`invalid_parameters`")
    detail: str
    invalid: list[InvalidParameter]


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


# --- the OpenAPI document, made to say what the server does -----------------------------------

HOST_REFUSED = {"description": "`Host` not served here (DNS rebinding; `TOUCHPOINTS_ALLOWED_HOSTS`)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDocument"}}}}
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def install_openapi(app: Any) -> None:
    """Make ``app.openapi()`` (``/openapi.json``, ``/docs``) tell the truth, once per app:
    every 422 for a bad parameter is the app's ``InvalidParameters`` (FastAPI documents its
    own body, which no route answers); every route may answer 421 (``consumers.api.guards``);
    ``POST /v1/events`` takes one event or an array of them, each ``oneOf`` the types the
    app's registry holds, discriminated by ``type`` (so a schema-driven client, or fuzzer,
    reaches the event models), or NDJSON of the same."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _tell_the_truth(document, app.state.registry)
        return app.openapi_schema

    app.openapi = openapi


def _tell_the_truth(document: dict[str, Any], registry: Any) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    _add_model(schemas, InvalidParameters)
    _add_model(schemas, ErrorDocument)
    invalid_parameters = {"description": "A parameter is invalid (each named, with the reason)",
                          "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(
                              model="InvalidParameters")}}}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if _refers_to(responses.get("422"), "HTTPValidationError"):
                responses["422"] = invalid_parameters
            responses.setdefault("421", HOST_REFUSED)
    if not any(_refers_to(document.get("paths"), name) for name in FASTAPI_VALIDATION_SCHEMAS):
        for name in FASTAPI_VALIDATION_SCHEMAS:
            schemas.pop(name, None)
    ingest = document.get("paths", {}).get("/v1/events", {}).get("post")
    if ingest is not None:
        event = _event_union_schema(registry, schemas)
        content = ingest["requestBody"]["content"]
        content["application/json"]["schema"] = {
            "oneOf": [event, {"type": "array", "items": event, "minItems": 1}],
        }


def _event_union_schema(registry: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """``oneOf`` every registered type's model (discriminated by ``type`` when each declares
    its ``type`` as a literal), with the models added to ``schemas``."""
    models = tuple(registry.model(name) for name in registry.names())
    union: Any = Union[models] if len(models) > 1 else models[0]  # type: ignore[valid-type]
    try:
        adapter = TypeAdapter(Annotated[union, Field(discriminator="type")])
    except PydanticUserError:  # a plugin type whose ``type`` is a plain str
        adapter = TypeAdapter(union)
    schema = adapter.json_schema(ref_template=REF_TEMPLATE)
    schemas.update(schema.pop("$defs", {}))
    return schema


REF_TEMPLATE = "#/components/schemas/{model}"


def _add_model(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE, by_alias=True)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema


def _refers_to(node: Any, name: str) -> bool:
    return f"#/components/schemas/{name}" in repr(node)
