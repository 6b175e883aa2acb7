"""``/v1/keys`` (scope ``admin``): list, create and revoke API keys over HTTP, as ``touchpoints
keys`` does on the data folder. A created key is in the answer once; only its digest is kept."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from application.access import Access, Scope, UnknownKey
from consumers.api.docs import ErrorDocument
from consumers.api.event_routes import json_response

router = APIRouter(prefix="/v1/keys", tags=["access"])


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="who or what holds the key, e.g. `marketing`")
    scopes: list[Scope] = Field(min_length=1, description="`emit`, `read`, `audit`, `admin` (admin implies all)")
    source: str | None = Field(None, min_length=1, max_length=200,
                               description="emit keys only: the one `source` its events must name")
    types: list[str] | None = Field(None, min_length=1, description="emit keys only: the event types it may write")


@router.get("", summary="Every API key (prefix, name, scopes, times; never the key)")
async def list_keys(request: Request) -> Response:
    access: Access = request.app.state.access
    records = await run_in_threadpool(access.keys)
    return json_response({"keys": [record.as_dict() for record in records]})


@router.post("", summary="Create an API key: the answer holds the key, shown this once", status_code=201,
             responses={422: {"model": ErrorDocument}})
async def create_key(request: Request, new: NewKey) -> Response:
    access: Access = request.app.state.access
    try:
        key, record = await run_in_threadpool(
            lambda: access.create_key(name=new.name, scopes=frozenset(new.scopes), source=new.source,
                                      types=None if new.types is None else frozenset(new.types)))
    except ValueError as error:
        return json_response({"error": "invalid_key_request", "detail": str(error)}, 422)
    return json_response({"key": key, **record.as_dict()}, 201)


@router.delete("/{prefix}", summary="Revoke an API key: refused from the next request on",
               responses={404: {"model": ErrorDocument}})
async def revoke_key(request: Request, prefix: str = Path(max_length=40, description="e.g. `tp_ab12cd34`")) -> Response:
    access: Access = request.app.state.access
    try:
        record = await run_in_threadpool(access.revoke, prefix)
    except UnknownKey as error:
        return json_response({"error": "unknown_key", "detail": str(error)}, 404)
    return json_response(record.as_dict())
