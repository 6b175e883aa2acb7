"""What a sealer keeps between batches (pseudonyms, keys, ciphertexts) never changes what is
stored, and never outlives an erasure, not even in a batch sealed while it ran (across
processes: tests/consumers/api/test_ingest_decode_sealing.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.demo import generate
from application.privacy.policy import Sealing
from application.privacy.sealing import Sealer
from application.privacy.sqlite_keys import SQLiteKeyStore
from events.logged import LoggedEvent
from events.registry import REGISTRY, encode_body
from tests.application.privacy.test_erasure import HANDLE, INSTAGRAM

DEMO = [REGISTRY.validate(item) for item in generate(40, 5)]


def later_follow() -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "social_followed", "occurred_at": "2025-03-01T09:00:00Z",
            "anonymous_id": INSTAGRAM, "channel": "instagram", "data": {"handle": HANDLE, "platform": "instagram"}}


class ErasedWhileSealing(SQLiteKeyStore):
    """A key store in which another connection destroys the keys just made, once: an erasure
    committed while a batch was being sealed."""

    erase_next = True

    def ensure(self, new):
        found = super().ensure(new)
        if self.erase_next:
            self.erase_next = False
            other = SQLiteKeyStore(self.path)
            other.destroy(list(found))
            other.close()
        return found


def test_seal_cache__a_batch_sealed_while_an_erasure_commits_is_sealed_again_with_new_keys(tmp_path):
    # given: a sealer whose key store sees an erasure of the keys it is making
    keys = ErasedWhileSealing(tmp_path / "keys.db")
    sealer = Sealer(keys, customer_ids=False)

    # when: it seals an event
    sealed = sealer.seal([REGISTRY.validate(later_follow())])[0]

    # then: the event it hands on is sealed under keys that exist, and opens
    logged = LoggedEvent(1, sealed.occurred_at, sealed.stream, sealed)
    sealing = Sealing(str(tmp_path / "keys.db"))
    try:
        assert sealing.opener().open_document([sealed.anonymous_id, sealed.data.handle], [logged]) == [INSTAGRAM, HANDLE]
    finally:
        sealing.close()
        keys.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(min_value=0, max_value=len(DEMO) - 1), min_size=1, max_size=60),
       split=st.integers(min_value=1, max_value=60))
def test_seal_cache__a_sealer_that_has_seen_the_values_stores_the_same_bytes_as_a_fresh_one(tmp_path, picks, split):
    # given: one key store, a sealer that has sealed batches before, and a fresh one
    folder = tmp_path / uuid.uuid4().hex
    keys = SQLiteKeyStore(Path(folder) / "keys.db")
    events = [DEMO[pick] for pick in picks]
    seasoned = Sealer(keys, customer_ids=True)

    # when: the seasoned one seals the events in batches, the fresh one each event alone
    batched = [event for start in range(0, len(events), split) for event in seasoned.seal(events[start : start + split])]
    alone = [Sealer(keys, customer_ids=True).seal([event])[0] for event in events]

    # then: the same events, byte for byte, and the inputs untouched
    keys.close()
    assert [encode_body(event) for event in batched] == [encode_body(event) for event in alone]
    assert batched == alone and [event.stream for event in batched] == [event.stream for event in alone]
    assert events == [DEMO[pick] for pick in picks] and all(event.sealed is None for event in events)
