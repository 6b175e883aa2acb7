"""The HTTP emitter against a real API that answers 429 (its writer held up by another
connection's write lock, one request already waiting): it waits, retries, drops nothing."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from streams.emitter import EmitFailed, HttpEmitter
from tests.conftest import wire_event
from tests.consumers.api.overload import app_server, body_of, post_in_background, wait_for_pending, writer_held_up

pytestmark = pytest.mark.slow


def test_server_overloaded__emitter_waits_retry_after_then_delivers_every_event(tmp_path):
    # given a server with one request waiting for a writer that cannot write, and room for nothing more
    events = [wire_event() for _ in range(30)]
    with app_server(tmp_path, max_pending_bytes=1) as server:
        answers: list[httpx.Response] = []
        emitter = HttpEmitter(server.url, api_key=server.key, backoff=0.05, max_retries=0)
        emitter.emit_many(events)
        with writer_held_up(tmp_path / "events.db"):
            waiting = post_in_background(server, body_of(5), answers)
            wait_for_pending(server.admission, 1)
            sender = threading.Thread(target=emitter.close)
            sender.start()
            time.sleep(1.5)  # refused meanwhile
        sender.join(30)
        waiting.join(30)

        # when the writer can write again, then the emitter delivered everything (told when by Retry-After)
        assert emitter.pending == 0 and emitter.stats.accepted == 30
        assert emitter.stats.overloaded >= 1 and server.admission.stats()["refused"] == emitter.stats.overloaded
        assert emitter.stats.overload_wait >= 1.0  # Retry-After is at least one second
        stored = {str(event.event_id) for event in server.store.read_all()}
        assert {event["event_id"] for event in events} <= stored and len(stored) == 35


def test_server_overloaded_past_max_overload_wait__emit_failed_and_the_events_stay_pending(tmp_path):
    # given a server that stays overloaded, and an emitter that waits at most 1.5 s for it
    events = [wire_event() for _ in range(10)]
    with app_server(tmp_path, max_pending_bytes=1) as server:
        answers: list[httpx.Response] = []
        emitter = HttpEmitter(server.url, api_key=server.key, backoff=0.05, max_overload_wait=1.5)
        emitter.emit_many(events)
        with writer_held_up(tmp_path / "events.db"):
            waiting = post_in_background(server, body_of(5), answers)
            wait_for_pending(server.admission, 1)

            # when it flushes
            started = time.monotonic()
            with pytest.raises(EmitFailed, match="max_overload_wait") as raised:
                emitter.flush()
            waited = time.monotonic() - started

        waiting.join(30)

        # then it gave up within the bound, keeping every event for a later flush that delivers them
        assert 1.5 <= waited < 3.5
        assert raised.value.pending == 10 and emitter.pending == 10
        emitter.close()
        assert emitter.pending == 0
        assert {event["event_id"] for event in events} <= {str(event.event_id) for event in server.store.read_all()}
