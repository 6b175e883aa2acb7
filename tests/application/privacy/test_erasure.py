"""Erasure: a person's keys destroyed, their values unreadable everywhere, the log and
every aggregate exactly as before.

The store is a real SQLite file in a data folder, filled through the HTTP ingestion path
(``decode_body`` then ``Ingestor.append_encoded``) with the demo journeys and one person,
Anna, whose identifiers are searched for afterwards."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import orjson
import pytest

from application.decode import decode_body
from application.demo import generate
from application.ingest import Ingestor
from application.privacy.erasure import erase
from application.privacy.policy import Sealing, ingest_registry
from application.privacy.pseudonyms import ERASED
from application.privacy.reading import timeline
from application.store_feed import load_views, read_member_events
from application.verify import verify_log
from application.view_documents import documents_path
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore

TOKEN = re.compile(r"pii1\.[A-Za-z0-9_-]{22}")
CUSTOMER = "cust-anna-4711"
COOKIE = "cookie-7f3a9c2e51"
EMAIL = "email:anna.lindqvist@example.org"
INSTAGRAM = "instagram:@anna_lindqvist"
HANDLE = "@anna_lindqvist"
TICKET_TEXT = "Anna Lindqvist, +46 70 123 45 67: parcel never arrived"
IDENTIFIERS = [CUSTOMER, COOKIE, EMAIL, INSTAGRAM, HANDLE, TICKET_TEXT, "lindqvist"]


def anna() -> list[dict]:
    def event(type_: str, at: str, **fields) -> dict:
        return {"event_id": str(uuid.uuid4()), "type": type_, "occurred_at": at, **fields}

    return [
        event("page_viewed", "2025-02-01T09:00:00Z", anonymous_id=COOKIE, channel="seo", data={"url": "https://x.example/"}),
        event("social_followed", "2025-02-02T09:00:00Z", anonymous_id=INSTAGRAM, channel="instagram",
              data={"handle": HANDLE, "platform": "instagram"}),
        event("email_opened", "2025-02-03T09:00:00Z", anonymous_id=EMAIL, channel="email", campaign="spring"),
        event("identity_linked", "2025-02-04T09:00:00Z", anonymous_id=COOKIE, customer_id=CUSTOMER),
        event("identity_linked", "2025-02-04T09:01:00Z", anonymous_id=INSTAGRAM, customer_id=CUSTOMER),
        event("identity_linked", "2025-02-04T09:02:00Z", anonymous_id=EMAIL, customer_id=CUSTOMER),
        event("order_placed", "2025-02-05T09:00:00Z", customer_id=CUSTOMER,
              data={"order_id": "o-anna-1", "revenue": "120.00", "currency": "EUR"}),
        event("support_ticket_opened", "2025-02-06T09:00:00Z", customer_id=CUSTOMER, channel="support",
              data={"reason": TICKET_TEXT, "ticket_id": "t-9"}),
    ]


def ingest(store: SQLiteEventStore, sealing: Sealing | None, items: list[dict]) -> None:
    registry = ingest_registry(REGISTRY, sealing)
    body = b"\n".join(orjson.dumps(item) for item in items)
    decoded = decode_body(body, True, registry, received_at=None)
    assert not decoded.invalid, decoded.invalid[:3]
    Ingestor(store, registry).append_encoded(decoded.batch)


INPUT = [*generate(300, 7), *anna()]


def files_holding(folder: Path, needle: bytes) -> list[str]:
    return [str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file() and needle in path.read_bytes()]


@pytest.fixture
def sealed(tmp_path: Path):
    sealing = Sealing.in_folder(tmp_path, customer_ids=True)
    store = SQLiteEventStore(tmp_path / "events.db")
    ingest(store, sealing, INPUT)
    yield tmp_path, store, sealing
    store.close()
    sealing.close()


def erase_anna(store: SQLiteEventStore, sealing: Sealing, identity: str = EMAIL):
    views = load_views(store)
    return erase(identity, views=views, read_events=lambda streams: read_member_events(store, streams),
                 store=store, sealing=sealing)


def anna_timeline(store: SQLiteEventStore, sealing: Sealing) -> dict:
    views = load_views(store)
    return timeline(views, CUSTOMER, lambda streams: read_member_events(store, streams), sealing)


def test_erasure__before_it_a_reader_sees_every_value_and_the_files_none(sealed):
    folder, store, sealing = sealed

    text = orjson.dumps(anna_timeline(store, sealing)).decode()

    assert all(identifier in text for identifier in IDENTIFIERS)
    assert all(files_holding(folder, identifier.encode()) == [] for identifier in IDENTIFIERS)


def test_erasure__no_file_of_the_data_folder_no_view_and_no_timeline_holds_the_person_after_it(sealed):
    folder, store, sealing = sealed
    load_views(store, snapshot_dir=folder / "cache")  # a snapshot of the journeys, as the CLI keeps
    keys = sealing.keys()
    anna_keys = list(keys.identities(sorted({token for event in store.read_all()
                                             for token in TOKEN.findall(event.data.decode())})).items())

    report = erase_anna(store, sealing)

    load_views(store, snapshot_dir=folder / "cache")
    views = load_views(store, documents_path=documents_path(folder), save_interval=0)  # as the API saves them
    views.refresh()
    views.close()
    documents = sealing.opener().open_document(views.all_documents())
    read_back = orjson.dumps([documents, anna_timeline(store, sealing)])
    assert report is not None and report.keys_destroyed == 4 and report.journal_emptied  # customer, 3 anonymous ids
    assert documents_path(folder).exists() and (folder / "cache").is_dir()
    assert [identifier for identifier in IDENTIFIERS if identifier.encode() in read_back] == []
    assert {identifier: files_holding(folder, identifier.encode()) for identifier in IDENTIFIERS} == {
        identifier: [] for identifier in IDENTIFIERS}
    destroyed = [(key, identity) for key_id, (key, identity) in anna_keys if key_id in report.identities
                 or f"customer-{key_id}" in report.identities or f"anonymous-{key_id}" in report.identities]
    assert len(destroyed) == 4
    assert all(files_holding(folder, key) == [] for key, _ in destroyed)


def test_erasure__the_timeline_shows_erased_markers_and_the_erasure(sealed):
    _, store, sealing = sealed
    erase_anna(store, sealing)

    document = anna_timeline(store, sealing)

    assert document["identity"].startswith("customer-" + ERASED)
    assert document["consents"]["erasure"]["granted"] is False
    assert document["events"][-1]["type"] == "customer_erased"
    assert document["order_count"] == 1 and document["net_revenue"] == 120.0


def test_erasure__the_hash_chain_verifies_before_and_after(sealed):
    _, store, sealing = sealed
    assert verify_log(store).ok

    erase_anna(store, sealing)

    report = verify_log(store)
    assert report.ok and report.events == len(INPUT) + 1


def test_erasure__every_view_document_is_what_it_was(sealed):
    _, store, sealing = sealed
    before = load_views(store).all_documents()

    erase_anna(store, sealing)

    assert load_views(store).all_documents() == before


def test_erasure__an_unknown_identity_erases_nothing(sealed):
    _, store, sealing = sealed

    assert erase_anna(store, sealing, "nobody@example.org") is None
    assert sealing.keys().generation() == 0


def test_sealing__changes_no_view_but_for_the_pseudonyms_that_opening_turns_back_into_ids(sealed, tmp_path_factory):
    _, store, sealing = sealed
    plain_store = SQLiteEventStore(tmp_path_factory.mktemp("plain") / "events.db")
    ingest(plain_store, None, INPUT)

    plain = load_views(plain_store).all_documents()
    sealed_documents = load_views(store).all_documents()
    opened = sealing.opener().open_document(sealed_documents)

    plain_store.close()
    aggregates = [name for name in plain if name not in ("top_customers", "prospects", "data_quality")]
    assert {name: sealed_documents[name] for name in aggregates} == {name: plain[name] for name in aggregates}
    assert opened == plain


def test_erasure__a_cookie_another_person_won_stays_theirs(tmp_path):
    sealing = Sealing.in_folder(tmp_path, customer_ids=True)
    store = SQLiteEventStore(tmp_path / "events.db")
    shared = "cookie-household-1"

    def event(type_: str, at: str, **fields) -> dict:
        return {"event_id": str(uuid.uuid4()), "type": type_, "occurred_at": at, **fields}

    ingest(store, sealing, [
        event("page_viewed", "2025-01-01T09:00:00Z", anonymous_id=shared, channel="seo"),
        event("identity_linked", "2025-01-02T09:00:00Z", anonymous_id=shared, customer_id="cust-bob"),
        event("identity_linked", "2025-01-03T09:00:00Z", anonymous_id=shared, customer_id=CUSTOMER),
        event("order_placed", "2025-01-04T09:00:00Z", customer_id=CUSTOMER,
              data={"order_id": "o-1", "revenue": "10.00", "currency": "EUR"}),
    ])

    report = erase_anna(store, sealing, CUSTOMER)

    bob = timeline(load_views(store), "cust-bob", lambda streams: read_member_events(store, streams), sealing)
    store.close()
    sealing.close()
    assert report is not None and report.keys_destroyed == 1
    assert shared in orjson.dumps(bob).decode()
