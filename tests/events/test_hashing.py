"""The audit hash chain: canonical bytes and links."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from events.hashing import GENESIS, canonical_bytes, chain
from events.times import utc_text
from events.sqlite.batch import canonical as sqlite_canonical
from events.store import NewEvent

AT = datetime(2024, 3, 1, 10, 0, 0, 5, tzinfo=timezone.utc)
FIELDS = dict(
    stream="customer-anna",
    event_id=uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
    type="page_viewed",
    schema_version=1,
    occurred_at=AT,
    recorded_at=AT + timedelta(days=1),
    data='{"channel":"instagram","title":"Grüße"}'.encode(),
    metadata=b"{}",
)


def test_genesis__is_32_zero_bytes():
    assert GENESIS == bytes(32)


def test_chain__is_deterministic_and_depends_on_the_previous_hash():
    canonical = canonical_bytes(**FIELDS)

    assert chain(GENESIS, canonical) == chain(GENESIS, canonical)
    assert len(chain(GENESIS, canonical)) == 32
    assert chain(GENESIS, canonical) != chain(b"\x01" * 32, canonical)


def test_canonical_bytes__are_the_documented_json_array_of_the_stored_fields():
    written_by_hand = (
        '["customer-anna","0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","page_viewed",1,'
        '"2024-03-01T10:00:00.000005Z","2024-03-02T10:00:00.000005Z",'
        '"{\\"channel\\":\\"instagram\\",\\"title\\":\\"Grüße\\"}","{}"]'
    ).encode()

    assert canonical_bytes(**FIELDS) == written_by_hand


def test_chain__is_the_sha256_of_the_previous_hash_then_the_canonical_bytes():
    canonical = canonical_bytes(**FIELDS)
    previous = bytes(range(32))

    assert chain(previous, canonical) == hashlib.sha256(previous + canonical).digest()


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("stream", "customer-ben"),
        ("event_id", uuid.UUID(int=1)),
        ("type", "ad_clicked"),
        ("schema_version", 2),
        ("occurred_at", AT + timedelta(microseconds=1)),
        ("recorded_at", AT),
        ("data", b'{"channel":"email"}'),
        ("metadata", b'{"key_id":"k1"}'),
    ],
)
def test_canonical_bytes__change_with_every_field(field, other):
    assert canonical_bytes(**{**FIELDS, field: other}) != canonical_bytes(**FIELDS)


def test_canonical_bytes__the_same_instant_in_another_offset_hashes_the_same():
    shifted = AT.astimezone(timezone(timedelta(hours=-7)))

    assert canonical_bytes(**{**FIELDS, "occurred_at": shifted}) == canonical_bytes(**FIELDS)


def test_sqlite_fast_path__canonical_bytes_are_identical():
    event = NewEvent(FIELDS["event_id"], FIELDS["type"], 1, FIELDS["occurred_at"], FIELDS["data"], FIELDS["metadata"])

    fast = sqlite_canonical(
        FIELDS["stream"], event, utc_text(event.occurred_at), utc_text(FIELDS["recorded_at"])
    )

    assert fast == canonical_bytes(**FIELDS)
