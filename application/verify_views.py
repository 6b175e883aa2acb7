"""``verify --views``: the views the live system serves against a fresh replay, digest by digest.

The live side is either a running server (its ``/v1`` documents with default
parameters, one per document of ``projections.views.all_views``) or a ``LiveViews``
in this process (the CLI's snapshot-backed views, or any holder a test feeds). The
replay folds the log up to the position the live views report, so both sides see the
same events; "now" is data time on both sides. A live server is read between two
identical ``/v1/views/status`` answers with its precomputed views up to date, once its
``/healthz`` says the views hold the log up to the position they report (over Kafka that
position is the highest any journey reflects: journeys of other partitions may still be on
the way until then), and the whole comparison is tried again (``attempts``) while the live
side is still moving.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from events.store import EventStore
from projections.attribution import MODELS

from application.live_views import LiveViews
from application.replay import replay
from application.replay_report import compute_views, digest

API_ROUTES: dict[str, tuple[str, dict[str, str]]] = {
    "funnel": ("/v1/funnel", {}),
    "first_contact_by_channel": ("/v1/first-contact", {"group_by": "channel"}),
    "first_contact_by_campaign": ("/v1/first-contact", {"group_by": "campaign"}),
    "conversion_time": ("/v1/conversion-time", {}),
    **{f"attribution_{model}": ("/v1/attribution", {"model": model}) for model in MODELS},
    "paths": ("/v1/paths", {}),
    "top_customers": ("/v1/customers/top", {}),
    "prospects": ("/v1/prospects", {}),
    "data_quality": ("/v1/data-quality", {}),
}
"""Where a server serves each document of ``all_views`` (default parameters)."""


class LiveViewsUnavailable(Exception):
    """The live views could not be read (server down, not serving views, or never settling)."""


@dataclass(frozen=True)
class ViewDigests:
    name: str
    live: str | None  # None: the live side does not serve it
    replayed: str

    @property
    def same(self) -> bool:
        return self.live == self.replayed


@dataclass
class ViewsComparison:
    source: str
    position: int | None  # the log position both sides reflect
    views: list[ViewDigests] = field(default_factory=list)
    attempts: int = 1
    earlier: list[dict[str, Any]] = field(default_factory=list)  # each attempt that differed before this one
    ready: bool | None = None  # a server's /healthz said its views settled before the last attempt (None: not asked)

    @property
    def same(self) -> bool:
        return all(view.same for view in self.views)

    @property
    def differing(self) -> list[str]:
        return [view.name for view in self.views if not view.same]

    def as_dict(self) -> dict[str, Any]:
        return {
            "same": self.same, "source": self.source, "position": self.position, "attempts": self.attempts,
            "differing": self.differing, "earlier": self.earlier, "ready": self.ready,
            "views": [{"name": v.name, "live": v.live, "replayed": v.replayed, "same": v.same} for v in self.views],
        }


def compare_documents(live: Mapping[str, Any], replayed: Mapping[str, Any]) -> list[ViewDigests]:
    """Digest each replayed document and the live one of the same name."""
    return [
        ViewDigests(name, digest(live[name]) if name in live else None, digest(document))
        for name, document in replayed.items()
    ]


def compare_with_live_views(store: EventStore, views: LiveViews, *, source: str = "live views in this process",
                            attempts: int = 3, wait: float = 0.5) -> ViewsComparison:
    """Compare a ``LiveViews`` (read under its lock, at its position) with a replay."""
    comparison = ViewsComparison(source, None)
    earlier: list[dict[str, Any]] = []
    for attempt in range(1, attempts + 1):
        with views.locked():
            position = views.position
            live = views.all_documents()
        comparison = _against_replay(store, live, position, source, attempt, earlier)
        if comparison.same:
            break
        time.sleep(wait)
    return comparison


def compare_with_cli_views(store: EventStore, snapshot_dir: Path | None) -> ViewsComparison:
    """The views the CLI commands answer from (its snapshot plus the events since) against a replay."""
    from application.store_feed import load_views

    views = load_views(store, snapshot_dir=snapshot_dir)
    return compare_with_live_views(store, views, source=f"CLI views (snapshot in {snapshot_dir})", attempts=1)


def compare_with_api(store: EventStore, url: str, *, api_key: str | None = None, attempts: int = 5,
                     wait: float = 1.0, timeout: float = 120.0, settle_timeout: float = 120.0) -> ViewsComparison:
    """Compare the documents a running server serves (read with ``api_key``, a ``read`` key)
    with a replay of the same store. Each attempt first waits up to ``settle_timeout`` s for
    ``/healthz`` to call the views ``ok``; one that never does is compared anyway (under
    steady ingest the views are never at the head), and the report says so (``ready``)."""
    import httpx

    base = url.rstrip("/")
    comparison = ViewsComparison(base, None)
    earlier: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(base_url=base, timeout=timeout, headers=headers) as client:
            for attempt in range(1, attempts + 1):
                ready = _views_settled(client, settle_timeout)
                status = _status(client)
                if status["refreshed_version"] not in (status["version"], -1):
                    time.sleep(wait)  # the precomputed views are being refreshed
                    continue
                live = {name: _get(client, path, params) for name, (path, params) in API_ROUTES.items()}
                if _status(client) != status:
                    continue  # the views moved while we read them
                comparison = _against_replay(store, live, status["position"], base, attempt, earlier)
                comparison.ready = ready
                if comparison.same:
                    return comparison
                time.sleep(wait)
    except httpx.HTTPError as error:
        raise LiveViewsUnavailable(f"cannot read the views of {base}: {error}") from None
    if not comparison.views:
        raise LiveViewsUnavailable(f"the views of {base} did not settle in {attempts} attempts")
    return comparison


def _views_settled(client: Any, timeout: float) -> bool:
    """Wait until the server's ``/healthz`` calls its views ``ok`` (every event up to the
    head in the documents); False if not within ``timeout`` s. A server without a views
    component on ``/healthz`` has nothing to wait for."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/healthz")
        views = (response.json().get("components") or {}).get("views") if response.status_code == 200 else None
        if views is None or views.get("status") == "ok":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def _status(client: Any) -> dict[str, Any]:
    status = _get(client, "/v1/views/status", {})
    return {key: status.get(key) for key in ("position", "version", "refreshed_version")}


def _get(client: Any, path: str, params: dict[str, str]) -> Any:
    response = client.get(path, params=params, headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise LiveViewsUnavailable(f"GET {path} answered {response.status_code}: {response.text[:200]}")
    return response.json()


def _against_replay(store: EventStore, live: Mapping[str, Any], position: int | None, source: str,
                    attempt: int, earlier: list[dict[str, Any]]) -> ViewsComparison:
    """One attempt; ``earlier`` (the attempts that differed so far) is extended with this one if it
    differs too, so a report that ends equal still says what an attempt before found."""
    if position is None:  # the live views hold nothing yet: compare with an empty replay
        position = -1
    result = replay(store, until_position=position)
    replayed = compute_views(result.population, result.now)
    comparison = ViewsComparison(source, None if position < 0 else position, compare_documents(live, replayed),
                                 attempt, list(earlier))
    if not comparison.same:
        earlier.append({"attempt": attempt, "position": comparison.position, "differing": comparison.differing})
    return comparison


def render(comparison: ViewsComparison) -> str:
    where = f" at position {comparison.position:,}" if comparison.position is not None else ""
    lines = [f"live views: {comparison.source}{where}"]
    if comparison.ready is False:
        lines.append("  /healthz never called the views ok while waiting: compared at the position they reported, "
                     "which journeys still on the way may not hold yet")
    for found in comparison.earlier:
        lines.append(f"  attempt {found['attempt']} at position {found['position']}: "
                     f"{', '.join(found['differing'])} differed (the live side may still have moved: compared again)")
    for view in comparison.views:
        mark = "same    " if view.same else "DIFFERS "
        lines.append(f"  {mark} {view.name:28} live {view.live or '(not served)'}  replay {view.replayed}")
    if comparison.same:
        lines.append(f"OK: all {len(comparison.views)} views equal a fresh replay")
    else:
        lines.append(f"FAILED: {len(comparison.differing)} view(s) differ from a fresh replay: "
                     + ", ".join(comparison.differing))
    return "\n".join(lines) + "\n"
