"""What an audit replay hands over: the view documents, their digests and a report.

Every view of ``projections.views.all_views`` is written to ``views/<name>.json`` in
canonical JSON (keys sorted, no whitespace, UTF-8), so a view's digest is simply the
SHA-256 of its file (``sha256sum views/funnel.json`` gives the digest the report
lists) and is the same on every run and machine for the same log and parameters.
``report.json`` holds the log's range, the head hash of the hash chain at that range,
event counts by type, the parameters and the digests, and nothing that depends on
when or where the replay ran; ``report.txt`` says the same for people.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from projections import population as population_module
from projections import views
from projections.attribution import MODELS
from projections.figures import iso
from projections.population import Population

from application.collector import collector_paused
from application.replay import ReplayResult

REPORT_FORMAT = 1
VIEWS_FOLDER = "views"
TIMES_RULE = "as_of and known_at are inclusive; a date means the end of that day (UTC)"

ViewFunction = Callable[[Population, datetime], dict[str, Any]]

VIEW_FUNCTIONS: dict[str, ViewFunction] = {
    "funnel": lambda population, now: views.funnel_view(population),
    "first_contact_by_channel": lambda population, now: views.first_contact_view(population, group_by="channel"),
    "first_contact_by_campaign": lambda population, now: views.first_contact_view(population, group_by="campaign"),
    "conversion_time": lambda population, now: views.conversion_time_view(population, now=now),
    **{
        f"attribution_{model}": (lambda population, now, model=model: views.attribution_view(population, model=model))
        for model in MODELS
    },
    "paths": lambda population, now: views.paths_view(population),
    "top_customers": lambda population, now: views.top_customers_view(population, now=now),
    "prospects": lambda population, now: views.prospects_view(population, now=now),
    "data_quality": lambda population, now: views.data_quality_view(population),
}
"""Each document of ``views.all_views`` on its own, for replays of a few views
(``tests/application/test_replay.py`` checks they stay equal to ``all_views``)."""

VIEW_NAMES = tuple(VIEW_FUNCTIONS)


class UnknownProjection(ValueError):
    """A ``--projection`` name that is neither a view nor a family of views."""


def select_views(names: Iterable[str] | None) -> list[str]:
    """The view names a selection means, in report order. A name is a view
    (``attribution_markov``) or a family prefix (``attribution``, ``first_contact``);
    None or empty selects every view."""
    wanted = [name.strip() for name in names or () if name.strip()]
    if not wanted:
        return list(VIEW_NAMES)
    chosen: set[str] = set()
    for name in wanted:
        matches = [view for view in VIEW_NAMES if view == name or view.startswith(name + "_")]
        if not matches:
            raise UnknownProjection(f"unknown projection {name!r}: choose from {', '.join(VIEW_NAMES)}"
                                    " (or a family: attribution, first_contact)")
        chosen.update(matches)
    return [view for view in VIEW_NAMES if view in chosen]


def compute_views(population: Population, now: datetime, names: Iterable[str] | None = None) -> dict[str, dict]:
    """The view documents: ``all_views`` for every view, else only those selected."""
    selected = select_views(names)
    with collector_paused():  # summarising and attributing every group allocate no cycles
        if len(selected) == len(VIEW_NAMES):
            return views.all_views(population, now=now)
        return {name: VIEW_FUNCTIONS[name](population, now) for name in selected}


def canonical_json(document: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes a digest is taken over."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def digest(document: Any) -> str:
    """SHA-256 (hex) of the document's canonical JSON."""
    return hashlib.sha256(canonical_json(document)).hexdigest()


def build_report(result: ReplayResult, documents: Mapping[str, dict], selected: Iterable[str]) -> dict[str, Any]:
    """The replay's report (JSON-ready, deterministic for a given log and parameters)."""
    encoded = {name: canonical_json(document) for name, document in documents.items()}
    return {
        "report_format": REPORT_FORMAT,
        "parameters": {
            "as_of": iso(result.as_of),
            "known_at": iso(result.known_at),
            "now": iso(result.now),
            "projections": list(selected),
            "times": TIMES_RULE,
        },
        "log": {
            "head_position": result.head_position,
            "first_position": result.first_position,
            "last_position": result.last_position,
            "first_recorded_at": iso(result.first_recorded_at),
            "last_recorded_at": iso(result.last_recorded_at),
            "events": result.events_read,
            "head_hash": result.head_hash.hex() if result.head_hash is not None else None,
            "recorded_after_known_at": result.after_known_at,
        },
        "replayed": {
            "events": result.events_replayed,
            "first_occurred_at": iso(result.first_occurred_at),
            "last_occurred_at": iso(result.last_occurred_at),
            "by_type": dict(sorted(result.by_type.items())),
            "occurred_after_as_of": result.after_as_of,
            "undecodable": result.undecodable,
            "undecodable_examples": result.undecodable_examples,
        },
        "projection_versions": {"population": population_module.VERSION, **views.VERSIONS},
        "views": {
            name: {"file": f"{VIEWS_FOLDER}/{name}.json", "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
            for name, raw in encoded.items()
        },
    }


def write_output(folder: Path, documents: Mapping[str, dict], report: Mapping[str, Any]) -> None:
    """``views/<name>.json`` (canonical bytes), ``report.json`` and ``report.txt`` in ``folder``.
    View files of an earlier replay into the same folder that this one did not write are
    removed, so the folder never mixes two replays."""
    target = folder / VIEWS_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    for name, document in documents.items():
        _write(target / f"{name}.json", canonical_json(document))
    for stale in target.glob("*.json"):
        if stale.stem not in documents:
            stale.unlink()
    _write(folder / "report.json", orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    _write(folder / "report.txt", render_text(report).encode())


def _write(path: Path, content: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(content)
    temporary.replace(path)


def render_text(report: Mapping[str, Any]) -> str:
    """The report for people: parameters, log range, counts, digests."""
    parameters, log, replayed = report["parameters"], report["log"], report["replayed"]
    lines = ["touchpoints replay report", "=" * 25, ""]
    lines.append(f"as of     {parameters['as_of'] or '-':32} events that occurred up to it (inclusive)")
    lines.append(f"known at  {parameters['known_at'] or '-':32} events the log had recorded by then (inclusive)")
    lines.append(f"now       {parameters['now'] or '-':32} ages and recency are measured to it")
    lines.append("")
    if log["events"]:
        lines.append(f"log range     positions {log['first_position']:,} .. {log['last_position']:,}"
                     f" ({log['events']:,} events; head at start {log['head_position']:,})")
        lines.append(f"recorded      {log['first_recorded_at']} .. {log['last_recorded_at']}")
        lines.append(f"head hash     {log['head_hash'] or '(none kept by this store)'}"
                     f"  (chain at position {log['last_position']:,})")
    else:
        lines.append("log range     (no events)")
    if parameters["known_at"]:
        lines.append(f"not yet known {log['recorded_after_known_at']:,} events recorded after known_at")
    lines.append("")
    lines.append(f"replayed      {replayed['events']:,} events, occurred "
                 f"{replayed['first_occurred_at'] or '-'} .. {replayed['last_occurred_at'] or '-'}")
    lines.append(f"left out      {replayed['occurred_after_as_of']:,} occurred after as_of,"
                 f" {replayed['undecodable']:,} undecodable")
    for example in replayed["undecodable_examples"]:
        lines.append(f"  position {example['position']} ({example['type']}): {example['reason']}")
    lines.append("")
    lines.append("events by type")
    for type_name, count in replayed["by_type"].items():
        lines.append(f"  {type_name:28} {count:>12,}")
    lines.append("")
    lines.append(f"views (sha256 of {VIEWS_FOLDER}/<name>.json)")
    for name, entry in report["views"].items():
        lines.append(f"  {name:28} {entry['sha256']}")
    return "\n".join(lines) + "\n"
