"""Sealing at ingestion: tokens in the fields, values encrypted beside them, opened back."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.privacy.keys import KeyStoreError
from application.privacy.policy import Sealing
from application.privacy.pseudonyms import ERASED, is_token, pseudonym
from application.privacy.sqlite_keys import SQLiteKeyStore
from events.logged import LoggedEvent
from events.personal import ANONYMOUS, CUSTOMER, HANDLE
from events.registry import REGISTRY, encode_body

AT = "2024-03-01T12:00:00Z"


def social(anonymous_id: str, handle: str, **fields) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "social_followed", "occurred_at": AT, "anonymous_id": anonymous_id,
            "channel": "instagram", "data": {"handle": handle, "platform": "instagram"}, **fields}


def support(customer_id: str, reason: str) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "support_ticket_opened", "occurred_at": AT,
            "customer_id": customer_id, "channel": "support", "data": {"reason": reason, "ticket_id": "t-1"}}


def logged(events) -> list[LoggedEvent]:
    at = datetime(2024, 3, 2, tzinfo=timezone.utc)
    return [LoggedEvent(position, at, event.stream, event) for position, event in enumerate(events, start=1)]


@pytest.fixture
def sealing(tmp_path: Path):
    policy = Sealing.in_folder(tmp_path, customer_ids=True)
    yield policy
    policy.close()


def test_sealing__personal_fields_hold_tokens_and_no_plaintext_is_encoded(sealing):
    event = REGISTRY.validate(social("instagram:@anna", "@anna"))

    sealed = sealing.seal([event])[0]

    body = encode_body(sealed)
    assert is_token(sealed.anonymous_id) and is_token(sealed.data.handle)
    assert sealed.stream == f"anonymous-{sealed.anonymous_id}"
    assert b"anna" not in body
    assert set(sealed.sealed) == {sealed.data.handle}  # the anonymous id's value is kept with its key
    assert sealed.data.platform == "instagram" and sealed.channel == "instagram"


def test_sealing__the_stored_event_decodes_through_the_registry(sealing):
    sealed = sealing.seal([REGISTRY.validate(support("c-42", "Anna called: parcel lost " * 10))])[0]

    decoded = REGISTRY.decode_stored(sealed.TYPE, sealed.SCHEMA_VERSION, encode_body(sealed))

    assert decoded == sealed


def test_sealing__opening_gives_every_value_back_while_the_keys_exist(sealing):
    events = sealing.seal([REGISTRY.validate(social("instagram:@anna", "@anna")),
                           REGISTRY.validate(support("c-42", "Anna called about her parcel"))])
    document = {"identity": events[1].stream, "rows": [events[0].anonymous_id, events[0].data.handle,
                                                       events[1].data.reason, events[0].stream]}

    opened = sealing.opener().open_document(document, logged(events))

    assert opened == {"identity": "customer-c-42",
                      "rows": ["instagram:@anna", "@anna", "Anna called about her parcel", "anonymous-instagram:@anna"]}


def test_sealing__pseudonyms_are_stable_across_processes_and_kinds_stay_apart(sealing, tmp_path):
    first = sealing.seal([REGISTRY.validate(social("instagram:@anna", "@anna"))])[0]
    sealing.close()  # another process opens the same key store

    again = Sealing.in_folder(tmp_path, customer_ids=True).seal([REGISTRY.validate(social("instagram:@anna", "@anna"))])[0]

    pepper = sealing.keys().pepper()
    assert again.anonymous_id == first.anonymous_id == pseudonym(pepper, ANONYMOUS, "instagram:@anna")
    assert pseudonym(pepper, HANDLE, "anna") != pseudonym(pepper, CUSTOMER, "anna")


def test_sealing__an_event_sent_again_is_sealed_byte_for_byte_the_same(sealing):
    wire = social("instagram:@anna", "@anna")

    first, second = (sealing.seal([REGISTRY.validate(wire)])[0] for _ in range(2))

    assert encode_body(first) == encode_body(second)


def test_sealing__an_identity_keeps_one_key_whoever_seals_first(sealing, tmp_path):
    other = Sealing.in_folder(tmp_path / "elsewhere", customer_ids=True)
    sealing.seal([REGISTRY.validate(social("cookie:1", "@a"))])
    keys = sealing.keys()
    token = pseudonym(keys.pepper(), ANONYMOUS, "cookie:1")
    stored = keys.keys([token])[token]

    created = keys.ensure({token: (b"k" * 64, b"other")})

    assert created == {token: stored}
    other.close()


def test_sealing__customer_ids_stay_as_they_are_unless_the_deployment_says_they_are_personal(tmp_path):
    policy = Sealing.in_folder(tmp_path, customer_ids=False)
    try:
        sealed = policy.seal([REGISTRY.validate(support("c-42", "a question"))])[0]
    finally:
        policy.close()

    assert sealed.customer_id == "c-42" and sealed.stream == "customer-c-42"
    assert is_token(sealed.data.reason)


def test_sealing__the_customer_id_choice_cannot_change_once_made(sealing, tmp_path):
    sealing.seal([REGISTRY.validate(support("c-42", "a question"))])

    with pytest.raises(KeyStoreError, match="cannot change"):
        Sealing.in_folder(tmp_path, customer_ids=False).sealer()


def test_sealing__destroyed_keys_open_as_erased_markers(sealing):
    events = sealing.seal([REGISTRY.validate(social("instagram:@anna", "@anna"))])
    token = events[0].anonymous_id

    sealing.keys().destroy([token])
    opened = sealing.opener().open_document({"id": token, "handle": events[0].data.handle}, logged(events))

    assert opened == {"id": ERASED + token, "handle": ERASED + events[0].data.handle}


def test_sealing__a_process_that_cached_a_key_forgets_it_after_an_erasure_elsewhere(sealing, tmp_path):
    first = sealing.seal([REGISTRY.validate(social("instagram:@anna", "@anna"))])[0]
    other_process = SQLiteKeyStore(tmp_path / "keys.db")
    other_process.destroy([first.anonymous_id])
    other_process.close()

    again = sealing.seal([REGISTRY.validate(social("instagram:@anna", "@anna"))])[0]

    assert again.sealed[again.data.handle] != first.sealed[first.data.handle]  # a new key, not the erased one
    assert sealing.opener().open_document(again.anonymous_id, logged([again])) == "instagram:@anna"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(handle=st.text(min_size=1, max_size=256), reason=st.text(max_size=512))
def test_sealing__any_value_opens_back_to_itself(sealing, handle, reason):
    events = sealing.seal([REGISTRY.validate(social("cookie:any", handle)),
                           REGISTRY.validate(support("c-1", reason))])

    opened = sealing.opener().open_document([events[0].data.handle, events[1].data.reason], logged(events))

    assert opened == [handle, reason]
