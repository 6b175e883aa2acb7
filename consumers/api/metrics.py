"""``GET /metrics``: the API process in the Prometheus text exposition format (0.0.4).

Written by hand (the format is a few lines of text) so the API needs no extra
dependency. What is exported:

- ``touchpoints_http_request_duration_seconds`` (histogram) and
  ``touchpoints_http_requests_total`` (counter) per method, route template and status;
- ``touchpoints_events_appended_total``: events in the log (every process's appends);
- ``touchpoints_store_head_position`` and ``touchpoints_views_position``: the log's head
  and the last position folded into the live views;
- ``touchpoints_view_feed_*`` (from the ``view_feed`` health check: ``backlog_events``,
  ``lag_seconds``... of the store feed or of the Kafka view feed): how far the views
  trail the log, i.e. the processor lag seen from the API;
- ``touchpoints_views_*``: what the live views applied, their version and refresh times;
- ``touchpoints_gc_*``: the cyclic garbage collector's collections and pauses by
  generation, and the objects frozen out of its passes (``application.collector``);
- every numeric field of every registered health check as
  ``touchpoints_<component>_<field>`` (e.g. ``touchpoints_relay_lag``), plus
  ``touchpoints_component_up{component=...}``.

Collectors run at scrape time; a collector that fails is reported by
``touchpoints_metrics_collector_errors_total`` instead of failing the scrape.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from application.collector import PAUSES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[tuple[str, str], ...]


@dataclass
class MetricFamily:
    """One metric: its name, type (counter, gauge, histogram), help text and samples.
    A sample is ``(suffix, labels, value)``; suffix is "", "_bucket", "_sum" or "_count"."""

    name: str
    kind: str
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, labels: Mapping[str, Any] | None = None, suffix: str = "") -> "MetricFamily":
        self.samples.append((suffix, _labels(labels), float(value)))
        return self


Collector = Callable[[], Iterable[MetricFamily]]


class Histogram:
    """A thread-safe histogram with one series per label set."""

    def __init__(self, name: str, help: str, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.name = name
        self.help = help
        self.buckets = buckets
        self._series: dict[Labels, list[float]] = {}  # counts per bucket, then +Inf, sum
        self._lock = threading.Lock()

    def observe(self, value: float, labels: Mapping[str, Any]) -> None:
        key = _labels(labels)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (len(self.buckets) + 2)
            for index, bound in enumerate(self.buckets):
                if value <= bound:
                    series[index] += 1
                    break
            else:
                series[len(self.buckets)] += 1
            series[-1] += value

    def family(self) -> MetricFamily:
        family = MetricFamily(self.name, "histogram", self.help)
        with self._lock:
            snapshot = {key: list(series) for key, series in self._series.items()}
        for key, series in sorted(snapshot.items()):
            cumulative = 0.0
            for bound, count in zip(self.buckets, series):
                cumulative += count
                family.samples.append(("_bucket", key + (("le", _number(bound)),), cumulative))
            cumulative += series[len(self.buckets)]
            family.samples.append(("_bucket", key + (("le", "+Inf"),), cumulative))
            family.samples.append(("_sum", key, series[-1]))
            family.samples.append(("_count", key, cumulative))
        return family

    def counts(self) -> MetricFamily:
        """The matching ``_total`` counter of requests (the histogram's counts)."""
        family = MetricFamily(self.name.replace("_duration_seconds", "s_total"), "counter", "Requests served.")
        with self._lock:
            for key, series in sorted(self._series.items()):
                family.samples.append(("", key, sum(series[:-1])))
        return family


class Metrics:
    """The process's metrics: request latencies plus collectors evaluated per scrape."""

    def __init__(self) -> None:
        self.requests = Histogram(
            "touchpoints_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
        )
        self._collectors: list[tuple[str, Collector]] = []
        self._collector_errors: dict[str, int] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.observe(seconds, {"method": method, "route": route, "status": str(status)})

    def add_collector(self, name: str, collector: Collector) -> None:
        self._collectors.append((name, collector))

    def collect(self) -> list[MetricFamily]:
        families = [self.requests.family(), self.requests.counts()]
        for name, collector in self._collectors:
            try:
                families.extend(collector())
            except Exception:  # a broken collector must not hide every other metric
                self._collector_errors[name] = self._collector_errors.get(name, 0) + 1
        errors = MetricFamily(
            "touchpoints_metrics_collector_errors_total", "counter", "Scrapes where a collector raised."
        )
        for name, count in sorted(self._collector_errors.items()):
            errors.add(count, {"collector": name})
        families.append(errors)
        return families

    def render(self) -> str:
        return render(self.collect())


def collector_families() -> list[MetricFamily]:
    """The cyclic collector's pauses in this process (``application.collector.PAUSES``)."""
    stats = PAUSES.stats()
    collections = MetricFamily("touchpoints_gc_collections_total", "counter",
                               "Cyclic garbage collections, by generation.")
    seconds = MetricFamily("touchpoints_gc_pause_seconds_total", "counter",
                           "Seconds the process was paused by cyclic garbage collections, by generation.")
    longest = MetricFamily("touchpoints_gc_longest_pause_seconds", "gauge",
                           "The longest pause of one cyclic garbage collection, by generation.")
    collected = MetricFamily("touchpoints_gc_collected_objects_total", "counter",
                             "Unreachable objects (reference cycles) cyclic garbage collections freed, by generation.")
    for generation in stats["generations"]:
        labels = {"generation": generation["generation"]}
        collections.add(generation["collections"], labels)
        seconds.add(generation["seconds"], labels)
        longest.add(generation["longest_seconds"], labels)
        collected.add(generation["collected"], labels)
    frozen = MetricFamily("touchpoints_gc_frozen_objects", "gauge",
                          "Objects frozen out of the collector's passes (the long-lived state; counted at most every 10 minutes).")
    return [collections, seconds, longest, collected, frozen.add(stats["frozen_objects"])]


def render(families: Iterable[MetricFamily]) -> str:
    """The text exposition of ``families``; families sharing a name are merged."""
    merged: dict[str, MetricFamily] = {}
    for family in families:
        existing = merged.get(family.name)
        if existing is None:
            merged[family.name] = MetricFamily(family.name, family.kind, family.help, list(family.samples))
        else:
            existing.samples.extend(family.samples)
    lines = []
    for family in merged.values():
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            lines.append(f"{family.name}{suffix}{_format_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def metric_name(*parts: str) -> str:
    """A valid metric name from free text: ``relay``, ``lag-ms`` -> ``relay_lag_ms``."""
    name = "_".join(re.sub(r"[^a-zA-Z0-9_]+", "_", part).strip("_").lower() for part in parts if part)
    return name if re.match(r"^[a-zA-Z_]", name) else f"_{name}"


def health_check_families(
    checks: Mapping[str, Callable[[], Mapping[str, Any]]], *, fields_of_all_but: tuple[str, ...] = ()
) -> list[MetricFamily]:
    """Every numeric field of every health check as a gauge (except the components named in
    ``fields_of_all_but``, exported elsewhere), plus whether each answered ok."""
    up = MetricFamily("touchpoints_component_up", "gauge", "1 if the component's health check answered ok.")
    families = [up]
    for component, check in checks.items():
        try:
            report = check()
        except Exception:
            up.add(0, {"component": component})
            continue
        status = report.get("status", "ok") if isinstance(report, Mapping) else "ok"
        up.add(1 if status in ("ok", "up", True) else 0, {"component": component})
        if component in fields_of_all_but:
            continue
        for key, value in _numeric_fields(report):
            name = metric_name("touchpoints", component, key)
            families.append(MetricFamily(name, "gauge", f"Health check field {key!r} of {component}.").add(value))
    return families


def _numeric_fields(report: Any, prefix: str = "") -> Iterable[tuple[str, float]]:
    if not isinstance(report, Mapping):
        return
    for key, value in report.items():
        path = f"{prefix}_{key}" if prefix else str(key)
        if isinstance(value, bool):
            yield path, float(value)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            yield path, float(value)
        elif isinstance(value, Mapping):
            yield from _numeric_fields(value, path)


class RequestMetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request by its route template (not the raw
    path, so ``/v1/customers/{id}/timeline`` is one series whatever the id)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(scope["method"], route, status, time.perf_counter() - started)


def _labels(labels: Mapping[str, Any] | None) -> Labels:
    return tuple((str(k), str(v)) for k, v in (labels or {}).items())


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels)
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
