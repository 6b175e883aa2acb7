"""The audit replay over real SQLite stores: the demo data set, and small hand-made logs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from application.ingest import Ingestor
from application.replay import replay
from application.replay_report import (
    VIEW_FUNCTIONS,
    VIEW_NAMES,
    UnknownProjection,
    build_report,
    compute_views,
    digest,
    select_views,
    write_output,
)
from application.store_feed import load_views
from events.models import Touch
from events.registry import REGISTRY, default_registry
from events.sqlite.store import SQLiteEventStore
from events.store import NewEvent, StreamState
from projections import views
from tests.consumers.helpers import PortOnly, cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(demo_store_path: Path) -> Iterator[SQLiteEventStore]:
    with SQLiteEventStore(demo_store_path) as store:
        yield store


@pytest.fixture(scope="module")
def demo_replay(demo):
    return replay(demo)


# --- what is replayed ---------------------------------------------------------------------------------


def test_replay__gives_the_documents_the_live_fold_of_the_same_log_gives(demo, demo_replay):
    live = load_views(demo)

    assert compute_views(demo_replay.population, demo_replay.now) == live.all_documents()


def test_replay__through_the_port_equals_the_sqlite_fast_path(demo, demo_replay):
    through_port = replay(PortOnly(demo))

    assert compute_views(through_port.population, through_port.now) == compute_views(
        demo_replay.population, demo_replay.now)
    assert (through_port.events_read, through_port.by_type, through_port.head_hash) == (
        demo_replay.events_read, demo_replay.by_type, demo_replay.head_hash)


def test_replay__reports_the_log_range_counts_by_type_and_the_stored_head_hash(demo, demo_replay):
    stored = list(demo.read_all())

    assert (demo_replay.first_position, demo_replay.last_position) == (stored[0].position, stored[-1].position)
    assert (demo_replay.first_recorded_at, demo_replay.last_recorded_at) == (stored[0].recorded_at,
                                                                             stored[-1].recorded_at)
    assert demo_replay.by_type == Counter(event.type for event in stored)
    assert demo_replay.head_hash == stored[-1].hash
    assert demo_replay.first_occurred_at == min(event.occurred_at for event in stored)


def test_replay__until_a_position_reads_nothing_after_it(demo):
    result = replay(demo, until_position=100)

    assert (result.events_read, result.last_position) == (100, 100)


def test_replay__reports_progress_for_every_event_read(demo, demo_replay):
    seen = []

    replay(demo, progress=seen.append, page_size=500)

    assert sum(seen) == demo_replay.events_read
    assert len(seen) > 1


def test_replay__an_empty_log_gives_the_empty_views(store):
    result = replay(store)

    assert (result.events_read, result.head_hash, result.first_position) == (0, None, None)
    assert compute_views(result.population, result.now)["funnel"]["reached"] == 0


class WebinarAttended(Touch):
    TYPE: ClassVar[str] = "webinar_attended"
    type: Literal["webinar_attended"] = "webinar_attended"


def test_replay__an_event_this_process_cannot_decode_is_counted_and_listed_not_folded(store, make_event):
    plugins = default_registry()
    plugins.register(WebinarAttended)
    Ingestor(store, plugins).append([plugins.validate(make_event("webinar_attended")), REGISTRY.validate(make_event())])

    result = replay(store)

    assert (result.undecodable, result.events_replayed) == (1, 1)
    assert result.undecodable_examples[0]["type"] == "webinar_attended"
    assert "unknown event type" in result.undecodable_examples[0]["reason"]


def test_replay__upcasts_events_stored_with_an_older_schema_version(store):
    body = {"event_id": str(uuid.uuid4()), "occurred_at": "2024-01-05T10:00:00.000000Z", "customer_id": "c-1",
            "data": {"order_id": "o-1", "total_cents": 1234, "currency": "EUR"}}
    event = NewEvent(uuid.UUID(body["event_id"]), "order_placed", 1, datetime(2024, 1, 5, 10, tzinfo=timezone.utc),
                     json.dumps(body).encode())
    store.append("customer-c-1", [event], expected_version=StreamState.ANY)

    result = replay(store)
    top = views.top_customers_view(result.population, now=result.now)

    assert result.by_type == {"order_placed": 1}
    assert top["rows"][0]["revenue"] == 12.34


# --- documents, digests, report -----------------------------------------------------------------------


def test_each_view_computed_alone_equals_its_all_views_document(demo_replay):
    together = views.all_views(demo_replay.population, now=demo_replay.now)

    alone = {name: function(demo_replay.population, demo_replay.now) for name, function in VIEW_FUNCTIONS.items()}

    assert alone == together


def test_select_views__a_family_name_selects_all_its_views():
    assert select_views(["attribution"]) == [name for name in VIEW_NAMES if name.startswith("attribution_")]
    assert select_views(["funnel", "first_contact"]) == ["funnel", "first_contact_by_channel",
                                                          "first_contact_by_campaign"]
    assert select_views(None) == list(VIEW_NAMES)


def test_select_views__an_unknown_name_is_refused_listing_the_choices():
    with pytest.raises(UnknownProjection) as caught:
        select_views(["funel"])

    assert "'funel'" in str(caught.value) and "funnel" in str(caught.value)


def test_report__is_deterministic_and_digests_are_sha256_of_canonical_json(demo, demo_replay):
    documents = compute_views(demo_replay.population, demo_replay.now)
    report = build_report(demo_replay, documents, VIEW_NAMES)
    again = replay(demo)

    assert build_report(again, compute_views(again.population, again.now), VIEW_NAMES) == report
    assert report["views"]["funnel"]["sha256"] == digest(documents["funnel"])
    assert report["log"]["head_hash"] == demo_replay.head_hash.hex()


def test_write_output__removes_view_files_an_earlier_replay_left(tmp_path, demo_replay):
    documents = compute_views(demo_replay.population, demo_replay.now)
    write_output(tmp_path, documents, build_report(demo_replay, documents, VIEW_NAMES))
    only_funnel = {"funnel": documents["funnel"]}

    write_output(tmp_path, only_funnel, build_report(demo_replay, only_funnel, ["funnel"]))

    assert [path.name for path in (tmp_path / "views").iterdir()] == ["funnel.json"]


# --- the command ---------------------------------------------------------------------------------------


def test_replay_cli__writes_every_view_file_whose_sha256_is_its_digest(capsys, demo_store_path, tmp_path):
    code, out, _ = cli(capsys, "replay", "--store", f"sqlite:///{demo_store_path}", "--out", str(tmp_path), "--quiet")

    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0
    assert set(report["views"]) == set(VIEW_NAMES)
    for name, entry in report["views"].items():
        assert hashlib.sha256((tmp_path / entry["file"]).read_bytes()).hexdigest() == entry["sha256"], name
    assert report["log"]["head_hash"] in (tmp_path / "report.txt").read_text()
    assert report["views"]["funnel"]["sha256"] in out


def test_replay_cli__projection_and_as_of_are_recorded_in_the_report(capsys, demo_store_path, tmp_path):
    code, _, _ = cli(capsys, "replay", "--store", f"sqlite:///{demo_store_path}", "--out", str(tmp_path),
                     "--projection", "funnel", "attribution_markov", "--as-of", "2023-06-30", "--quiet")

    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0
    assert set(report["views"]) == {"funnel", "attribution_markov"}
    assert report["parameters"]["as_of"] == "2023-06-30T23:59:59.999999Z"
    assert report["replayed"]["occurred_after_as_of"] > 0


def test_replay_cli__digests_are_the_same_in_two_processes(demo_store_path, tmp_path):
    reports = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        subprocess.run(
            [sys.executable, "-m", "consumers.cli.main", "replay", "--store", f"sqlite:///{demo_store_path}",
             "--out", str(out), "--quiet"],
            cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed}, check=True, capture_output=True, timeout=120,
        )
        reports.append((out / "report.json").read_bytes())

    assert reports[0] == reports[1]


def test_replay_cli__an_unknown_projection_exits_2(capsys, demo_store_path):
    code, _, err = cli(capsys, "replay", "--store", f"sqlite:///{demo_store_path}", "--projection", "funel")

    assert code == 2
    assert "unknown projection 'funel'" in err


def test_replay_cli__a_bad_known_at_exits_2_naming_it(capsys, demo_store_path):
    code, _, err = cli(capsys, "replay", "--store", f"sqlite:///{demo_store_path}", "--known-at", "last week")

    assert code == 2
    assert "known_at" in err


def test_replay_cli__undecodable_events_exit_1_after_writing_the_views(capsys, store, make_event, tmp_path):
    plugins = default_registry()
    plugins.register(WebinarAttended)
    Ingestor(store, plugins).append([plugins.validate(make_event("webinar_attended"))])

    code, _, err = cli(capsys, "replay", "--store", f"sqlite:///{store.path}", "--out", str(tmp_path / "out"))

    assert code == 1
    assert "could not be decoded" in err
    assert (tmp_path / "out" / "views" / "funnel.json").exists()
