"""``POST /v1/erasures`` (scope ``admin``): erase a person, as ``touchpoints erase`` does.

Their keys are destroyed and a ``customer_erased`` event appended
(``application.privacy.erasure``); the answer names what was erased by stored forms only.
The person is found through the live views' identity graph, after waiting (up to
``CATCH_UP_SECONDS``) for the views to fold what the log held when the request came.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from application.privacy.erasure import erase
from application.store_feed import read_member_events
from consumers.api.docs import ErrorDocument
from consumers.api.event_routes import json_response

router = APIRouter(prefix="/v1/erasures", tags=["privacy"])


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity: str = Field(min_length=1, max_length=512, description=(
        "any id of the person: a customer id, a linked anonymous id (cookie, handle, email) or a stream name"))


class ErasureDone(BaseModel):
    identity: str = Field(description="as the request named it")
    root: str = Field(description="the person's identity as stored (a pseudonym where sealed)")
    identities: list[str] = Field(description="every identity of the person, as stored")
    events: int = Field(description="the person's events: all kept, their personal fields now unreadable")
    keys_destroyed: int
    journal_emptied: bool = Field(description="no copy of the keys is left in the key store's journal")
    position: int = Field(description="log position of the `customer_erased` event")


@router.post(
    "", summary="Erase a person: destroy their keys, record `customer_erased`",
    responses={200: {"model": ErasureDone}, 404: {"model": ErrorDocument}, 409: {"model": ErrorDocument},
               503: {"model": ErrorDocument}},
)
async def post_erasure(request: Request, erasure: ErasureRequest) -> Response:
    state = request.app.state
    if state.sealing is None:
        return json_response({"error": "sealing_off", "detail": "personal data is not sealed here "
                              "(TOUCHPOINTS_SEAL_PERSONAL_DATA is off): there is no key to destroy"}, 409)
    if state.views is None:
        return json_response({"error": "views_unavailable",
                              "detail": "this server has no views: erasure needs the identity graph"}, 503)
    store, registry = state.store, state.registry
    await _views_reach(state.views, store.head_position())
    report = await run_in_threadpool(
        erase, erasure.identity, views=state.views, store=store, sealing=state.sealing,
        read_events=lambda streams: read_member_events(store, streams, registry),
    )
    if report is None:
        return json_response({"error": "unknown_identity", "detail": "no person is known by that identity"}, 404)
    return json_response(report.as_dict())


CATCH_UP_SECONDS = 10.0


async def _views_reach(views: Any, head: int | None) -> None:
    """Wait (a while) for the views to fold the log up to ``head``: a link appended just
    before the request then counts, and its identity's keys go too. Views that stay behind
    (a stopped worker) do not block an erasure: it erases the identities they know."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while head is not None and (views.position is None or views.position < head) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
