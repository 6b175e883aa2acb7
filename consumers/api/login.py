"""``GET /login``: the dashboard's way in. ``/login?token=...`` (the one-time link ``touchpoints
up`` and ``touchpoints login-link`` print) trades the token for a session cookie (HttpOnly,
SameSite=Strict, ``read`` only) and redirects to ``/``, so the token leaves the address bar
and the history; the token then stops working. ``/login`` alone explains how to get a link."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from application.access import Access, Unauthorized
from application.access.service import SESSION_TTL
from consumers.api.auth import SESSION_COOKIE, login_hint_page

router = APIRouter()


@router.get("/login", include_in_schema=False)
async def login(request: Request, token: str | None = Query(None, max_length=200)) -> Response:
    if not token:
        return login_hint_page("This page needs a login link.", 200)
    access: Access = request.app.state.access
    try:
        session = await run_in_threadpool(access.exchange_login_token, token)
    except Unauthorized as error:
        return login_hint_page(str(error).capitalize() + ".", 401)
    response = RedirectResponse("/", status_code=303,
                                headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
    response.set_cookie(SESSION_COOKIE, session, max_age=int(SESSION_TTL.total_seconds()), path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response
