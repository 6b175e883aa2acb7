"""The read API of the marketing views, ``/metrics`` and the dashboard.

``install_views(app, store=..., views=...)`` is the one call ``create_app`` makes: it
adds ``GET /metrics`` (always) and, when live views are given, the ``/v1`` view routes
and the dashboard at ``GET /``.

Every view route answers the document of ``projections.views`` (JSON, pre-encoded
once per computation) or, for list views, CSV (``format=csv`` or ``Accept: text/csv``).
Bad parameters get 422 naming each parameter, unknown customers 404. Responses carry
an ``ETag`` (the view's version) so a poller that sends ``If-None-Match`` gets 304, and
``X-Touchpoints-Position``: the log position the document reflects (the fold's when it was
computed; -1 before any event), JSON and CSV alike, so a reader can compare it with the
head ``/healthz`` reports. Right after a restart the default documents are the ones the
previous process saved (``LiveViews.restore_documents``: their own positions in the header,
``/healthz`` says ``restored``); what they do not answer (other parameters, timelines) gets
503 with ``Retry-After`` until the live views took over. The documents themselves stay what ``projections.views`` makes:
the same bytes a replay of the log gives.

Point in time: ``as_of`` (events that occurred up to T) and ``known_at`` (events the
log had recorded up to T) select a population rebuilt by replay instead of the live
one, through the ``views_at(as_of, known_at) -> LiveViews`` hook the audit replay
provides (``application.replay``), given to ``install_views`` or set later as
``app.state.views_at``; ``install_views`` defaults it to ``application.replay.PointInTimeViews``
over the store (a hook that is set to None answers 501). Both take an RFC 3339 time with an
offset or a date meaning the end of that day in UTC (``application.replay.point_in_time``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from consumers.api.metrics import (
    CONTENT_TYPE,
    MetricFamily,
    Metrics,
    RequestMetricsMiddleware,
    collector_families,
    health_check_families,
)
from application.exports import NotAListView
from application.live_views import CachedView, LiveViews, UnknownView, ViewsNotReady
from application.privacy.reading import ConsentWithdrawn
from application.privacy.reading import timeline as person_timeline
from application.replay import DATE_HELP as POINT_IN_TIME_HELP
from application.replay import point_in_time
from application.store_feed import read_member_events
from events.logged import LoggedEvent
from events.registry import REGISTRY, EventRegistry
from events.store import EventStore
from projections import parameters
from projections.attribution import MODELS
from projections.parameters import ViewParameterError

ViewsAt = Callable[[datetime | None, datetime | None], LiveViews]

Model = Literal[MODELS]  # type: ignore[valid-type]  # an enum in the OpenAPI schema, which the dashboard reads
GroupBy = Literal["channel", "campaign", "source"]  # an enum in the OpenAPI schema
Format = Literal["json", "csv"]

TIME_HELP = (
    "RFC 3339 time or date (a date means midnight UTC; a time without an offset means UTC)."
)
FORMAT_QUERY = Query(None, description="`json` (default) or `csv`; CSV can also be asked with `Accept: text/csv`.")
AS_OF_QUERY = Query(None, description="Point in time: only events that occurred up to this moment (inclusive). "
                    + POINT_IN_TIME_HELP + ".")
KNOWN_AT_QUERY = Query(None, description="Point in time: only events the log had recorded up to this moment "
                       "(inclusive), i.e. what could have been seen then. " + POINT_IN_TIME_HELP + ".")
FROM_HELP = "Window start (inclusive). " + TIME_HELP
TO_HELP = "Window end (exclusive). " + TIME_HELP
GROUP_BY_HELP = ("A touch without a campaign (or source) counts under `(none)`. A touch's source is the utm source "
                 "or referrer host for the tracking API (`/v1/track`...), what the emitter sent for `POST /v1/events`.")
NOW_HELP = ("The moment ages and recency are measured to. Default: the time of the newest event the views "
            "hold (data time), so answers do not drift with the wall clock. " + TIME_HELP)
MAX_LOOKBACK_DAYS = 36_525  # 100 years: beyond any journey, and far from the calendar's edge (year 1)
LOOKBACK_HELP = (f"Only touches within this many days before the conversion count (default: no limit; "
                 f"at most {MAX_LOOKBACK_DAYS:,}, 100 years).")

VIEW_TAG = ["views"]
POSITION_HEADER = "X-Touchpoints-Position"
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDocument"}}}
VIEW_RESPONSES: dict[int | str, dict[str, Any]] = {  # what every view route may answer, for the OpenAPI document
    200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}},
          "description": "The view (CSV for list views with `format=csv` or `Accept: text/csv`)",
          "headers": {POSITION_HEADER: {"description": "The log position the document reflects (-1: no event yet).",
                                        "schema": {"type": "integer"}}}},
    304: {"description": "Not modified since the `ETag` sent in `If-None-Match`"},
    406: {"content": _ERROR, "description": "CSV asked of a view without a list of rows"},
    501: {"content": _ERROR, "description": "`as_of`/`known_at` on a server without the audit replay"},
    503: {"content": _ERROR, "description": "The views are loading after a restart; retry after `Retry-After`"},
}


class PointInTimeUnavailable(Exception):
    """``as_of``/``known_at`` asked of a server that has no replay hook."""

    def __init__(self, param: str):
        self.param = param
        super().__init__(f"{param}: point-in-time views need the audit replay, not available on this server")


# Timelines run on this many threads, not the default pool of 40: each one reads SQLite and
# takes the views lock, and 16 of them at once served half as many timelines a second as
# two did (GIL hand-offs, a cold page cache per connection), which showed as p99.
TIMELINE_THREADS = max(1, min(2, os.cpu_count() or 1))


def install_views(
    app: FastAPI,
    *,
    store: EventStore,
    views: LiveViews | None,
    registry: EventRegistry = REGISTRY,
    views_at: ViewsAt | None = None,
) -> None:
    """Add ``/metrics`` and, with ``views``, the view routes and the dashboard to ``app``."""
    metrics = Metrics()
    app.state.metrics = metrics
    if views_at is None and views is not None:
        from application.replay import PointInTimeViews  # the audit replay (application/replay.py)

        views_at = PointInTimeViews(store, registry=registry)
    app.state.views_at = views_at
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    metrics.add_collector("store", lambda: _store_families(store))
    metrics.add_collector("collector", collector_families)
    metrics.add_collector(
        "health",
        lambda: health_check_families(getattr(app.state, "health_checks", {}), fields_of_all_but=("store", "views")),
    )
    app.add_exception_handler(ViewParameterError, _invalid_parameter)
    app.add_exception_handler(PointInTimeUnavailable, _point_in_time_unavailable)
    app.add_exception_handler(ViewsNotReady, _views_not_ready)
    app.add_api_route(
        "/metrics", _metrics_endpoint, methods=["GET"], tags=["health"], include_in_schema=True,
        summary="Prometheus metrics", response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Text exposition format 0.0.4."}},
    )
    if views is None:
        return
    metrics.add_collector("views", lambda: _views_families(views))
    timeline_reads = ThreadPoolExecutor(TIMELINE_THREADS, thread_name_prefix="timeline")
    app.router.on_shutdown.append(lambda: timeline_reads.shutdown(wait=False, cancel_futures=True))
    app.include_router(create_view_router(views, store, registry=registry, views_at=views_at,
                                          timeline_reads=timeline_reads))
    from consumers.dashboard import mount_dashboard

    mount_dashboard(app)


async def _metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    text = await run_in_threadpool(metrics.render)
    return Response(text, media_type=CONTENT_TYPE)


def create_view_router(
    views: LiveViews,
    store: EventStore,
    *,
    registry: EventRegistry = REGISTRY,
    views_at: ViewsAt | None = None,
    timeline_reads: Executor | None = None,
) -> APIRouter:
    """The view routes. ``timeline_reads`` runs timelines (store reads plus the views lock);
    None: the default thread pool."""
    router = APIRouter(prefix="/v1", tags=VIEW_TAG, responses=VIEW_RESPONSES)

    async def source(
        request: Request, as_of: str | None, known_at: str | None
    ) -> tuple[LiveViews, datetime | None, datetime | None]:
        occurred = point_in_time("as_of", as_of)
        recorded = point_in_time("known_at", known_at)
        if occurred is None and recorded is None:
            return views, None, None
        hook = getattr(request.app.state, "views_at", views_at)  # install_views sets it; it may be replaced
        if hook is None:
            raise PointInTimeUnavailable("as_of" if occurred is not None else "known_at")
        return await run_in_threadpool(hook, occurred, recorded), occurred, recorded

    async def answer(
        request: Request, name: str, params: dict[str, Any], fmt: str | None,
        as_of: str | None, known_at: str | None, filename: str,
    ) -> Response:
        holder, _, _ = await source(request, as_of, known_at)
        entry = holder.peek(name, **params)
        if entry is None:
            entry = await run_in_threadpool(lambda: holder.view(name, **params))
        return respond(request, entry, fmt, filename, etag=holder is views)  # a replayed holder restarts at 0

    @router.get("/attribution", summary="Multi-touch attribution of conversions to channels or campaigns")
    async def attribution(
        request: Request,
        model: Model = Query("linear", description="Attribution model."),
        lookback_days: float | None = Query(None, gt=0, le=MAX_LOOKBACK_DAYS, description=LOOKBACK_HELP),
        from_: str | None = Query(None, alias="from", description="Conversions from (inclusive, by occurred_at). "
                                  + TIME_HELP),
        to: str | None = Query(None, description="Conversions before (exclusive). " + TIME_HELP),
        group_by: GroupBy = Query("channel", description="Credit channels, campaigns or sources. " + GROUP_BY_HELP),
        half_life_days: float = Query(7.0, gt=0, description="time_decay only: days for a touch's weight to halve."),
        format: Format | None = FORMAT_QUERY,
        as_of: str | None = AS_OF_QUERY,
        known_at: str | None = KNOWN_AT_QUERY,
    ) -> Response:
        """Credits in conversions and in conversion value per channel (or campaign), rows sorted by
        conversions (descending). Conversions without any touch before them are counted in
        `unattributed_conversions` and credited to nobody."""
        params = {
            "model": model, "lookback_days": lookback_days, "group_by": group_by,
            "start": parameters.moment("from", from_), "end": parameters.moment("to", to),
            "half_life_days": half_life_days if model == "time_decay" else None,
        }
        return await answer(request, "attribution", params, format, as_of, known_at, f"attribution-{model}")

    @router.get("/first-contact", summary="First contacts per channel: reached, converted, revenue")
    async def first_contact(
        request: Request,
        group_by: GroupBy = Query(
            "channel", description="Group by the first contact's channel, campaign or source. " + GROUP_BY_HELP
        ),
        from_: str | None = Query(None, alias="from", description="First contacts from (inclusive). " + TIME_HELP),
        to: str | None = Query(None, description="First contacts before (exclusive). " + TIME_HELP),
        format: Format | None = FORMAT_QUERY,
        as_of: str | None = AS_OF_QUERY,
        known_at: str | None = KNOWN_AT_QUERY,
    ) -> Response:
        """Per first-contact channel: identity groups reached, converted (first order after the first
        contact), conversion rate and net lifetime revenue of those customers."""
        params = {"group_by": group_by, "start": parameters.moment("from", from_), "end": parameters.moment("to", to)}
        return await answer(request, "first_contact", params, format, as_of, known_at, "first-contact")

    @router.get("/conversion-time", summary="Time from first contact to conversion per first channel")
    async def conversion_time(
        request: Request,
        group_by: Literal["first_channel", "first_campaign", "first_source"] = Query(
            "first_channel", description="Group by the first contact's channel, campaign or source. " + GROUP_BY_HELP
        ),
        now: str | None = Query(None, description=NOW_HELP),
        format: Format | None = FORMAT_QUERY,
        as_of: str | None = AS_OF_QUERY,
        known_at: str | None = KNOWN_AT_QUERY,
    ) -> Response:
        """Conversions, mean, median and p90 days, and a histogram with fixed buckets per first
        channel; also path lengths and prospects' age since first contact."""
        params = {"group_by": group_by, "now": parameters.moment("now", now)}
        return await answer(request, "conversion_time", params, format, as_of, known_at, "conversion-time")

    @router.get("/paths", summary="Top conversion paths")
    async def paths(
        request: Request,
        top: int = Query(20, ge=1, le=10_000, description="How many paths."),
        collapse_repeats: bool = Query(True, description="Count instagram > instagram > email as instagram > email."),
        lookback_days: float | None = Query(None, gt=0, le=MAX_LOOKBACK_DAYS, description=LOOKBACK_HELP),
        group_by: GroupBy = Query("channel", description="Paths of channels, campaigns or sources. " + GROUP_BY_HELP),
        from_: str | None = Query(None, alias="from", description=FROM_HELP),
        to: str | None = Query(None, description=TO_HELP),
        format: Format | None = FORMAT_QUERY,
        as_of: str | None = AS_OF_QUERY,
        known_at: str | None = KNOWN_AT_QUERY,
    ) -> Response:
        """The channel sequences that led to conversions, with counts and value, most frequent first;
        also the most frequent paths of prospects who have not converted."""
        params = {
            "top": top, "collapse_repeats": collapse_repeats, "lookback_days": lookback_days,
            "group_by": group_by, "start": parameters.moment("from", from_), "end": parameters.moment("to", to),
        }
        return await answer(request, "paths", params, format, as_of, known_at, "paths")

    @router.get("/customers/top", summary="The most valuable customers")
    async def top_customers(
        request: Request,
        by: Literal["revenue", "orders", "rfm"] = Query("revenue", description="Rank by net revenue, orders or RFM."),
        limit: int = Query(20, ge=1, le=100_000, description="How many customers."),
        now: str | None = Query(None, description=NOW_HELP),
        format: Format | None = FORMAT_QUERY,
        as_of: str | None = AS_OF_QUERY,
        known_at: str | None = KNOWN_AT_QUERY,
    ) -> Response:
        """Net revenue, orders, and recency / frequency / monetary scores (quintiles 1-5)."""
        params = {"by": by, "limit": limit, "now": parameters.moment("now", now)}
        return await answer(request, "top_customers", params, format, as_of, known_at, f"customers-top-{by}")

    @router.get("/prospects", summary="Prospects: reached, not converted yet")
    async def prospects(
        request: Request,
        limit: int = Query(100, ge=1, le=100_000, description="How many prospects."),
        channel: str | None = Query(None, min_length=1, description="Only prospects first reached on this channel."),
        now: str | None = Query(None, description=NOW_HELP),
        format: Format | None = FORMAT_QUERY,
        as_of: str | None = AS_OF_QUERY,
        known_at: str | None = KNOWN_AT_QUERY,
    ) -> Response:
        """Identity groups with at least one touch and no order, with their age since first contact."""
        params = {"limit": limit, "channel": channel, "now": parameters.moment("now", now)}
        return await answer(request, "prospects", params, format, as_of, known_at, "prospects")

    @router.get("/funnel", summary="From reached to converted to repeat buyers")
    async def funnel(
        request: Request,
        format: Format | None = FORMAT_QUERY,
        as_of: str | None = AS_OF_QUERY,
        known_at: str | None = KNOWN_AT_QUERY,
    ) -> Response:
        return await answer(request, "funnel", {}, format, as_of, known_at, "funnel")

    @router.get("/data-quality", summary="Identity conflicts, unknown refunds and other data problems")
    async def data_quality(
        request: Request,
        limit: int = Query(100, ge=1, le=100_000, description="Examples listed per problem."),
        format: Format | None = Query(None, description="`json` only: this view has no single list of rows "
                                      "(CSV answers 406)."),
        as_of: str | None = AS_OF_QUERY,
        known_at: str | None = KNOWN_AT_QUERY,
    ) -> Response:
        """Identity conflicts (which link won), merge conflicts and cycles, refunds of unknown orders,
        over-refunded orders, duplicate order ids, orders without an identity link, currencies."""
        return await answer(request, "data_quality", {"limit": limit}, format, as_of, known_at, "data-quality")

    @router.get(
        "/customers/{id}/timeline", summary="Every event of a customer across all linked identities",
        responses={404: {"description": "No customer or identity of that id."},
                   451: {"content": _ERROR, "description": "The person withdrew analytics consent "
                         "(`consent_withdrawn`): not shown from that moment on; `as_of` before it shows the "
                         "timeline as it was."}},
    )
    async def timeline(
        request: Request,
        id: str = Path(..., min_length=1, max_length=512,
                       description="A customer id, any linked anonymous id (e.g. `instagram:@anna`) or a stream name."),
        format: Format | None = FORMAT_QUERY,
        as_of: str | None = AS_OF_QUERY,
        known_at: str | None = KNOWN_AT_QUERY,
    ) -> Response:
        """The customer's events in touch order (occurred_at, then log position) with channel,
        campaign, type and data, plus first contact, first order, order count and net revenue."""
        holder, occurred, recorded = await source(request, as_of, known_at)

        def read(streams: list[str]) -> Iterable[LoggedEvent]:
            return read_member_events(store, streams, registry, as_of=occurred, known_at=recorded)

        position = holder.position  # before the fold may move on: the document reflects at least it
        sealing = getattr(request.app.state, "sealing", None)
        try:
            if timeline_reads is None:
                document = await run_in_threadpool(person_timeline, holder, id, read, sealing)
            else:
                document = await asyncio.get_running_loop().run_in_executor(
                    timeline_reads, person_timeline, holder, id, read, sealing)
        except ConsentWithdrawn as withdrawn:
            return _error(451, "consent_withdrawn", str(withdrawn), parameter="id", where="path")
        if document is None:
            return _error(404, "unknown_customer", f"no customer or identity {id!r}", parameter="id", where="path")
        entry = CachedView(("timeline", ()), holder.version, 0.0, 0.0, document, position)
        return respond(request, entry, format, f"timeline-{_safe_filename(id)}", etag=False, rows="events")

    @router.get("/views/status", summary="What the live views hold: position, version, data time")
    async def views_status() -> Response:
        stats = views.stats()
        headers = {"Cache-Control": "no-store", POSITION_HEADER: _position_header(stats["position"])}
        return Response(_json(stats), media_type="application/json", headers=headers)

    return router


# --- responses ---------------------------------------------------------------------------


def respond(
    request: Request, entry: CachedView, fmt: str | None, filename: str, *, etag: bool = True, rows: str | None = None
) -> Response:
    csv = fmt == "csv" if fmt else prefers_csv(request.headers.get("accept", ""))
    tag = _etag(entry, csv) if etag else None
    headers = {"Cache-Control": "no-cache", "X-Views-Version": str(entry.version),
               POSITION_HEADER: _position_header(entry.position)}
    if tag is not None:
        headers["ETag"] = tag
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
    if not csv:
        return Response(entry.json_bytes(), media_type="application/json", headers=headers)
    try:
        text = entry.csv_text() if rows is None else _csv(entry.document, rows)
    except NotAListView:
        return _error(406, "not_acceptable", "this view has no list of rows to export as CSV; ask for JSON",
                      parameter="format", where="query")
    headers["Content-Disposition"] = f'inline; filename="{filename}.csv"'
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)


def _position_header(position: int | None) -> str:
    return str(position if position is not None else -1)


def prefers_csv(accept: str) -> bool:
    """True when the Accept header ranks ``text/csv`` above JSON."""
    best_csv = best_json = 0.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        if media == "text/csv":
            best_csv = max(best_csv, quality)
        elif media in ("application/json", "*/*", "application/*"):
            best_json = max(best_json, quality)
    return best_csv > 0 and best_csv >= best_json


def _csv(document: dict[str, Any], rows: str) -> str:
    from application.exports import to_csv

    return to_csv(document, preferred_rows=rows)


def _etag(entry: CachedView, csv: bool) -> str:
    digest = hashlib.blake2s(repr(entry.key).encode(), digest_size=6).hexdigest()
    return f'W/"{entry.version}-{_position_header(entry.position)}-{digest}{"-csv" if csv else ""}"'


def _safe_filename(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def _json(document: Any) -> bytes:
    import orjson

    return orjson.dumps(document)


def _error(status: int, error: str, reason: str, *, parameter: str, where: str) -> Response:
    document = {
        "error": error,
        "detail": f"{parameter}: {reason}",
        "invalid": [{"parameter": parameter, "in": where, "reason": reason}],
    }
    return Response(_json(document), status_code=status, media_type="application/json")


async def _invalid_parameter(request: Request, error: Exception) -> Response:
    assert isinstance(error, ViewParameterError)
    return _error(422, "invalid_parameters", error.reason, parameter=error.param, where="query")


async def _views_not_ready(request: Request, error: Exception) -> Response:
    assert isinstance(error, ViewsNotReady)
    document = {"error": "views_loading", "detail": str(error), "restored_position": error.restored_position}
    return Response(_json(document), status_code=503, media_type="application/json",
                    headers={"Retry-After": str(error.retry_after), "Cache-Control": "no-store"})


async def _point_in_time_unavailable(request: Request, error: Exception) -> Response:
    assert isinstance(error, PointInTimeUnavailable)
    return _error(501, "not_implemented", "point-in-time views need the audit replay, not available on this server",
                  parameter=error.param, where="query")


# --- metrics collectors ------------------------------------------------------------------


def _store_families(store: EventStore) -> list[MetricFamily]:
    head = store.head_position()
    return [
        MetricFamily("touchpoints_store_head_position", "gauge", "Position of the newest event in the log.")
        .add(head if head is not None else -1),
        MetricFamily("touchpoints_events_appended_total", "counter", "Events in the log (appended by any process).")
        .add(store.count()),
    ]


def _views_families(views: LiveViews) -> list[MetricFamily]:
    stats = views.stats()
    families = [
        MetricFamily("touchpoints_views_position", "gauge", "Last log position folded into the live views.")
        .add(stats["position"] if stats["position"] is not None else -1),
        MetricFamily("touchpoints_views_version", "gauge", "Changes applied to the live views.").add(stats["version"]),
        MetricFamily("touchpoints_views_events_applied_total", "counter", "Events folded into the live views.")
        .add(stats["events_applied"]),
        MetricFamily("touchpoints_views_journeys_applied_total", "counter", "Journeys applied from the processors.")
        .add(stats["journeys_applied"]),
        MetricFamily("touchpoints_views_refreshes_total", "counter", "Refreshes of the precomputed views.")
        .add(stats["refreshes"]),
        MetricFamily("touchpoints_views_computes_total", "counter", "View documents computed.").add(stats["computes"]),
        MetricFamily("touchpoints_views_last_refresh_seconds", "gauge", "Duration of the last refresh.")
        .add(stats["last_refresh_seconds"]),
        MetricFamily("touchpoints_views_longest_refresh_seconds", "gauge", "Duration of the longest refresh so far.")
        .add(stats["longest_refresh_seconds"]),
        MetricFamily("touchpoints_views_refresh_seconds_total", "counter",
                     "Seconds the refreshes spent, by part: waiting for the views' lock, computing, encoding.")
        .add(stats["refresh_waiting_seconds"], {"part": "waiting"})
        .add(stats["refresh_computing_seconds"], {"part": "computing"})
        .add(stats["refresh_encoding_seconds"], {"part": "encoding"}),
        MetricFamily("touchpoints_views_stale", "gauge", "1 while the precomputed views trail the data.")
        .add(1 if stats["refreshed_version"] != stats["version"] else 0),
    ]
    return families


__all__ = ["PointInTimeUnavailable", "ViewsAt", "create_view_router", "install_views", "prefers_csv",
           "read_member_events", "respond", "UnknownView"]
