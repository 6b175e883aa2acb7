"""An HTTP decoding worker keeps what it sealed between requests (``application.privacy.sealing``):
an erasure in another process must still reach it."""

from __future__ import annotations

import asyncio
import os
import uuid

import orjson

from application.ingest import Ingestor
from application.privacy.policy import Sealing, ingest_registry
from application.privacy.pseudonyms import ERASED
from consumers.api.ingest_decode import BodyDecoder
from events.logged import LoggedEvent
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from tests.application.privacy.test_erasure import HANDLE, INSTAGRAM, anna, erase_anna


def later_follow() -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "social_followed", "occurred_at": "2025-03-01T09:00:00Z",
            "anonymous_id": INSTAGRAM, "channel": "instagram", "data": {"handle": HANDLE, "platform": "instagram"}}


def opened_handles(store: SQLiteEventStore, sealing: Sealing) -> list[str]:
    """The handle of every social_followed event in the log, as a reader opens it."""
    events = [LoggedEvent(recorded.position, recorded.recorded_at, recorded.stream,
                          REGISTRY.decode_stored(recorded.type, recorded.schema_version, recorded.data))
              for recorded in store.read_all() if recorded.type == "social_followed"]
    return [sealing.opener().open_document(logged.event.data.handle, [logged]) for logged in events]


def test_seal_cache__a_decoding_worker_seals_a_persons_next_event_with_a_new_key_after_her_erasure(tmp_path):
    # given: an HTTP decoding worker, another process, has sealed Anna's events (its cache holds her seals)
    sealing = Sealing.in_folder(tmp_path, customer_ids=True)
    store = SQLiteEventStore(tmp_path / "events.db")
    registry = ingest_registry(REGISTRY, sealing)
    decoder = BodyDecoder(registry, workers=1, pool_min_bytes=0)
    ingestor = Ingestor(store, registry)

    def post(items: list[dict]) -> None:
        decoded = asyncio.run(decoder.decode(b"\n".join(orjson.dumps(item) for item in items), True))
        ingestor.append_encoded(decoded.batch)

    try:
        worker = decoder._executor().submit(os.getpid).result()
        post(anna())
        assert opened_handles(store, sealing) == [HANDLE]

        # when: she is erased in this process, then the same worker decodes a new event of hers
        erase_anna(store, sealing)
        post([later_follow()])

        # then: what was erased stays erased, and the new event opens (a new key, not a cached one)
        assert decoder._executor().submit(os.getpid).result() == worker != os.getpid()
        first, later = opened_handles(store, sealing)
        assert first.startswith(ERASED) and later == HANDLE
    finally:
        decoder.close()
        store.close()
        sealing.close()
