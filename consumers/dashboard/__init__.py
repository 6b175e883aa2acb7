"""The marketing dashboard: one static page (``static/index.html``) over the read API.

The page polls ``GET /v1/views/status`` every two seconds and reloads the views when
their version changes. It reads with the session cookie ``/login`` set (scope ``read``,
``consumers.api.auth``); an answer of 401 (the session ended) sends it to ``/login``. The attribution models it offers are the enum of the ``model``
parameter in the API's OpenAPI schema (``GET /openapi.json``), which is built from
``projections.attribution.MODELS``. Charts use Chart.js 4 (MIT licence, vendored as
``static/chart.umd.min.js`` from the npm package ``chart.js``, its licence beside it in
``static/chart.js.LICENSE.md``; the trailing source-map comment was removed since the
map is not shipped), so the page works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
CHART_JS_VERSION = "4.6.1"


def mount_dashboard(app: FastAPI) -> None:
    """Serve the page at ``GET /`` and its assets under ``/dashboard/static``."""
    page = (STATIC / "index.html").read_bytes()

    async def dashboard() -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
    app.add_api_route("/", dashboard, methods=["GET"], include_in_schema=False)
