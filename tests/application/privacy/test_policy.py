"""Sealing travels with the ingest registry to the processes that decode ingestion."""

from __future__ import annotations

import orjson

from application.bulk_ingest import bulk_load
from application.demo import generate
from application.ingest import Ingestor
from application.privacy.policy import Sealing, ingest_registry
from application.privacy.reading import timeline
from application.store_feed import load_views, read_member_events
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from tests.application.privacy.test_erasure import CUSTOMER, IDENTIFIERS, anna


def test_policy__events_decoded_by_forked_backfill_decoders_are_sealed_and_open_here(tmp_path):
    sealing = Sealing.in_folder(tmp_path, customer_ids=True)
    store = SQLiteEventStore(tmp_path / "events.db")
    lines = b"\n".join(orjson.dumps(item) for item in [*generate(200, 3), *anna()]) + b"\n"

    report = bulk_load([lines], Ingestor(store, ingest_registry(REGISTRY, sealing)), decoder="process",
                       batch_size=500, processes=2)

    document = timeline(load_views(store), CUSTOMER, lambda streams: read_member_events(store, streams), sealing)
    store.close()
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("events.db*"))
    sealing.close()
    assert report.rejected == 0 and report.accepted == lines.count(b"\n")
    assert all(identifier in orjson.dumps(document).decode() for identifier in IDENTIFIERS)
    assert [identifier for identifier in IDENTIFIERS if identifier.encode() in stored] == []


def test_policy__without_sealing_the_ingest_registry_is_the_registry_itself():
    assert ingest_registry(REGISTRY, None) is REGISTRY
