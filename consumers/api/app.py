"""The HTTP API: ``create_app`` wires the ingestion routes, health, and (when given) live views.

The app does not own the store: whoever opened it closes it after the server stops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from consumers.api.admission import install_admission
from consumers.api.auth import (
    ACCESS_RESPONSES,
    CREDENTIALS_IN_SCHEMA,
    AccessGate,
    Forbidden,
    forbidden_handler,
    principal_of,
    unauthorized_handler,
)
from consumers.api.docs import Health, install_openapi
from consumers.api.guards import HostGuard, allowed_hosts
from consumers.api.event_routes import json_response
from consumers.api.erasure_routes import router as erasure_router
from consumers.api.event_routes import router as event_router
from consumers.api.view_routes import install_views
from consumers.api.tracking_routes import install_tracking
from consumers.api.ingest_decode import BodyDecoder
from consumers.api.key_routes import router as key_router
from consumers.api.login import router as login_router
from application.access import Access, Scope, Unauthorized, open_access
from application.ingest import Ingestor
from application.privacy.mode import settle
from application.privacy.policy import ingest_registry
from application.settings import Settings
from events.registry import REGISTRY, EventRegistry
from events.store import EventStore, StoreFull, StoreUnavailable

HealthCheck = Callable[[], Mapping[str, Any]]

# Statuses of a component on its way to "ok" (the views catching up with the log, a worker
# joining its group): nothing is broken, so /healthz's status stays "ok", but not ready yet.
# "restored" and "rebuilding": the default documents saved before a restart are served while the live
# views load (or rebuild, after a version change).
PROGRESS_STATUSES = frozenset({"catching_up", "starting", "restored", "rebuilding"})

# Pages of the log (GET /v1/events) are read on this many threads, not the default pool of
# 40: a page is CPU under the GIL, and 16 at once took turns unfairly (p99 1.0 s against
# ~0.3 s with two threads, at the same throughput).
LOG_READ_THREADS = max(1, min(2, os.cpu_count() or 1))

log = logging.getLogger(__name__)

DESCRIPTION = """Every customer touchpoint as an immutable event.

* `POST /v1/events` ingests one event, a JSON array or NDJSON (all-or-nothing, idempotent by `event_id`).
* `GET /v1/events` reads the log in global order; `GET /v1/schemas` lists the JSON Schema of every type.
* `GET /healthz` reports each component; `ready` is true once every one is `ok`, the views caught up
  with the log's head included.

Every route but `/healthz` needs an API key, `Authorization: Bearer KEY` (or HTTP Basic with the key
as user name and an empty password), with a scope: `emit` (POST /v1/events), `read` (views, schemas,
/metrics, /healthz details), `audit` (GET /v1/events, `as_of`/`known_at`), `admin` (keys; implies all).
No key or a revoked one: 401; a key without the scope: 403.
"""


def create_app(
    *,
    store: EventStore,
    settings: Settings,
    views: Any = None,
    registry: EventRegistry = REGISTRY,
    health_checks: Mapping[str, HealthCheck] | None = None,
    access: Access | None = None,
) -> FastAPI:
    """Build the API over an open store. ``views`` is the live-views holder the view routes
    serve (None: ingestion only); ``/healthz`` then reports a ``views`` component (their
    position against the store's head, ``views_health``). ``health_checks`` adds (or, by
    name, replaces) components: each callable returns a dict whose ``status`` ("ok" unless
    said otherwise) decides health.

    Every route needs a key or the dashboard's session (``consumers.api.auth``) but
    ``/healthz`` and ``/login``; ``access`` holds the keys (None: the data folder's
    ``access.db``, opened here and closed at shutdown)."""
    app = FastAPI(title="touchpoints", version="0.1.0", description=DESCRIPTION,
                  dependencies=CREDENTIALS_IN_SCHEMA, responses=ACCESS_RESPONSES)
    settings = settle(settings, store)  # the log's sealing mode; SealingModeError if the settings contradict it
    app.state.store = store
    app.state.settings = settings
    app.state.registry = registry
    app.state.sealing = settings.sealing  # personal data sealed at ingestion, opened for readers
    ingest = ingest_registry(registry, app.state.sealing, data=settings.data)
    app.state.ingestor = Ingestor(store, ingest)
    app.state.body_decoder = BodyDecoder(ingest, workers=settings.ingest_workers)
    app.router.on_shutdown.append(app.state.body_decoder.close)
    install_admission(app, settings)
    if access is None:
        access = open_access(settings.data)
        app.router.on_shutdown.append(access.close)
    app.state.access = access
    app.add_middleware(AccessGate, access=access)  # after admission: outside it, so strangers cost no budget
    app.state.log_reads = log_reads = ThreadPoolExecutor(LOG_READ_THREADS, thread_name_prefix="log-read")
    app.router.on_shutdown.append(lambda: log_reads.shutdown(wait=False, cancel_futures=True))
    app.state.views = views
    checks: dict[str, HealthCheck] = {"store": lambda: store_health(store, settings)}
    if views is not None:
        checks["views"] = lambda: views_health(views, store)
    app.state.health_checks = {**checks, **(health_checks or {})}

    app.add_exception_handler(RequestValidationError, _invalid_parameters)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(Unauthorized, unauthorized_handler)
    app.add_exception_handler(Forbidden, forbidden_handler)
    app.include_router(event_router)
    install_tracking(app)  # the Segment-spec tracking API (consumers/api/tracking_routes.py)
    app.include_router(key_router)
    app.include_router(erasure_router)
    app.include_router(login_router)
    app.add_api_route(
        "/healthz", healthz, methods=["GET"], summary="State of every component", tags=["health"],
        response_model=None, responses={200: {"model": Health}},
    )

    # --- live views: the views helper's routes (consumers/api/view_routes.py) go here ---
    install_views(app, store=store, views=views, registry=registry)
    app.add_middleware(HostGuard, allowed=allowed_hosts(settings.host, settings.allowed_hosts))  # outermost
    install_openapi(app)

    return app


async def healthz(request: Request) -> Response:
    """Public: the status of the whole and of each component. With a ``read`` key (or the
    dashboard's session) each component's details too: paths, pids, positions, URLs."""
    checks: dict[str, HealthCheck] = request.app.state.health_checks
    components = await run_in_threadpool(run_health_checks, checks)
    statuses = [component.get("status") for component in components.values()]
    healthy = all(status == "ok" or status in PROGRESS_STATUSES for status in statuses)
    ready = all(status == "ok" for status in statuses)
    principal = principal_of(request)
    if principal is None or not principal.allows(Scope.READ):
        components = {name: {"status": component["status"]} for name, component in components.items()}
    return json_response({"status": "ok" if healthy else "degraded", "ready": ready, "components": components})


def run_health_checks(checks: Mapping[str, HealthCheck]) -> dict[str, dict[str, Any]]:
    """Each check's report with a ``status`` (default "ok"); a check that raises is "down"."""
    components: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        try:
            found = dict(check())
            report = {"status": found.pop("status", "ok"), **found}
        except Exception as error:  # a failing component must not take /healthz down with it
            log.warning("health check %s failed: %s", name, error)
            report = {"status": "down", "error": f"{type(error).__name__}: {error}"}
        components[name] = report
    return components


def store_health(store: EventStore, settings: Settings) -> dict[str, Any]:
    return {"url": redact_url(settings.store_url), "head_position": store.head_position(), "count": store.count()}


def views_health(views: Any, store: EventStore) -> dict[str, Any]:
    """Whether the views a reader gets hold the log up to the store's head: ``ok`` when
    they do, else ``catching_up`` with how far behind (``views_readiness``). ``position``
    is what the served default documents reflect (``LiveViews.documents_position``),
    ``folded`` what the fold reached.

    While the documents saved before a restart are served (``LiveViews.restore_documents``):
    ``restored`` (``rebuilding`` when they are of another version than these views), with
    their position and how far the live population has come (``live``); ``at_head`` says
    the restored documents already reflect the store's head (nothing was appended
    meanwhile: they are the correct views). Never ``ok`` then: other queries wait."""
    head = store.head_position()  # read first: views that move on meanwhile only pass it
    restored = views.restored_status()
    if restored is None:
        return views_readiness(head, views.documents_position, folded=views.position)
    report = views_readiness(head, restored["position"], folded=views.position)
    report["status"] = "restored" if restored["version"] == restored["views_version"] else "rebuilding"
    report["at_head"] = report["behind"] == 0 and report["status"] == "restored"
    report["restored"] = restored
    report["live"] = {"position": views.position, "identities": len(views.population.journeys)}
    return report


def views_readiness(head: int | None, position: int | None, **details: Any) -> dict[str, Any]:
    """``ok`` when ``position`` reached ``head`` (None: the log is empty, nothing to reach),
    else ``catching_up``; ``behind`` is in position units (events, on SQLite)."""
    behind = 0 if head is None else max(head - (position if position is not None else 0), 0)
    status = "ok" if behind == 0 else "catching_up"
    return {"status": status, "position": position, "head": head, "behind": behind, **details}


def journeys_views_health(views: Any, store: EventStore, feed: Any, tails: Any) -> dict[str, Any]:
    """``views_health`` for views the view feed fills from the journeys topic with no relay or
    worker at hand (``touchpoints serve`` against an external Kafka). Their position is the
    highest any journey reflects, not a watermark, so ``ok`` also needs every events
    partition folded through its last event up to the head (``tails``, a
    ``streams.log_tails.PartitionTails``) as the last whole batch of journeys applied names
    it (``ViewFeed.folded_positions``), and the documents rendered since."""
    partitions = feed.stats()["partitions"]
    report = views_health(views, store)
    if views.restored_status() is not None or partitions == 0:
        return report  # restored documents (ok only once the live views took over), or no partition yet
    lag = feed.lag()
    folded = held_through(tails.through(report["head"], partitions), feed.folded_positions(), lag)
    current = views.documents_current  # read last: rendered after what ``folded`` counted
    report.update(folded=folded, documents_current=current, view_feed_lag=lag)
    if report["status"] == "ok" and not (folded and current):
        report["status"] = "catching_up"
    return report


def held_through(last_positions: Mapping[int, int], folded_positions: Mapping[int, int], feed_lag: int | None) -> bool:
    """Whether the journeys applied hold every event up to each partition's last one
    (``last_positions``): each partition's last whole fold applied reached it. A partition
    whose journeys carry no fold mark (an earlier journey processor) counts as held once the
    feed read the topic to its end (``feed_lag`` 0), as before the marks."""
    unmarked = False
    for partition, last in last_positions.items():
        folded = folded_positions.get(partition)
        if folded is None:
            unmarked = True
        elif folded < last:
            return False
    return not unmarked or feed_lag == 0


def redact_url(url: str) -> str:
    """The URL without a password, safe to show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def _invalid_parameters(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    invalid = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ())]
        name = ".".join(location[1:]) if len(location) > 1 else ".".join(location)
        invalid.append({"parameter": name, "in": location[0] if location else "", "reason": item.get("msg", "")})
    names = ", ".join(item["parameter"] for item in invalid)
    return json_response(
        {"error": "invalid_parameters", "detail": f"invalid parameter(s): {names}", "invalid": invalid}, 422
    )


async def _store_unavailable(request: Request, error: Exception) -> Response:
    log.error("event store unavailable: %s", error)
    full = isinstance(error, StoreFull)  # 507 Insufficient Storage: room must be made, retrying alone will not do
    document: dict[str, Any] = {"error": "store_full" if full else "store_unavailable",
                                "detail": f"the event store is {'full' if full else 'unavailable'}: {error}"}
    if request.method == "POST":
        document["accepted"] = 0
    return json_response(document, 507 if full else 503)

