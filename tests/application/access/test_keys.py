"""Keys, scopes and narrowing: the pure rules of application/access."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.access.keys import (
    KEY_PATTERN,
    KeyFormatError,
    Principal,
    Scope,
    granted,
    key_prefix,
    key_record,
    new_key,
    parse_scopes,
)
from application.access.narrowing import refusals

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_new_key__has_a_visible_prefix_and_256_random_bits():
    key = new_key()

    assert KEY_PATTERN.fullmatch(key)
    assert len(key.split("_", 2)[2]) >= 43  # token_urlsafe(32)
    assert key_prefix(key) == key.split("_")[1]


def test_key_record__keeps_the_hash_and_never_the_key():
    key = new_key()

    record = key_record(key, name="marketing", scopes=frozenset({Scope.READ}), created_at=NOW)

    assert key not in repr(record) and key.encode() not in record.digest
    assert key not in orjson.dumps(record.as_dict()).decode()
    assert record.as_dict()["prefix"] == f"tp_{key_prefix(key)}"


@given(st.text(max_size=80))
def test_key_prefix__refuses_any_other_text_without_repeating_it(text):
    if KEY_PATTERN.fullmatch(text):
        return
    with pytest.raises(KeyFormatError) as raised:
        key_prefix(text)
    assert len(text) < 8 or text not in str(raised.value)


@pytest.mark.parametrize(("scope", "implied"), [
    ("emit", {"emit"}),
    ("read", {"read"}),
    ("audit", {"audit", "read"}),
    ("admin", {"admin", "audit", "read", "emit"}),
])
def test_granted__admin_implies_everything_and_audit_implies_read(scope, implied):
    assert {s.value for s in granted(parse_scopes(scope))} == implied


def test_parse_scopes__takes_commas_and_repeats_and_refuses_unknown_names():
    assert parse_scopes(["emit,read", "audit"]) == {Scope.EMIT, Scope.READ, Scope.AUDIT}
    with pytest.raises(ValueError, match="unknown scope 'write'"):
        parse_scopes("write")


def test_key_record__narrowing_is_for_emit_keys_alone():
    with pytest.raises(ValueError, match="emit keys only"):
        key_record(new_key(), name="x", scopes=frozenset({Scope.EMIT, Scope.READ}), created_at=NOW, source="web")


def narrowed(source=None, types=None) -> Principal:
    return Principal("web", frozenset({Scope.EMIT}), "ab12cd34", source, types)


def body(**fields) -> bytes:
    return orjson.dumps({"event_id": "x", **fields})


def test_refusals__name_every_item_of_another_type_or_source_by_index():
    key = narrowed("web", frozenset({"page_viewed", "ad_clicked"}))

    found = refusals(key, ["page_viewed", "order_placed", "ad_clicked", "page_viewed"],
                     [body(source="web"), body(source="web"), body(source="shop"), body()])

    assert [(r.index, r.reason.split()[0]) for r in found] == [(1, "type"), (2, "source"), (3, "source")]


def test_refusals__a_key_that_is_not_narrowed_refuses_nothing_and_reads_no_body():
    assert refusals(Principal("svc", frozenset({Scope.EMIT})), ["order_placed"], [b"not json"]) == []
