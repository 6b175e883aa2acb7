"""Emitter clients: the HTTP one against the real API under uvicorn (behind a small
gate that makes chosen requests fail), the Kafka one against the bundled broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pytest

from consumers.api.app import create_app
from consumers.api.server import base_url, bind_socket, make_server
from tests.conftest import make_key
from application.settings import Settings
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from streams.broker import free_port
from streams.emitter import EmitFailed, EventsRejected, HttpEmitter, KafkaEmitter

pytestmark = pytest.mark.slow

Rule = Callable[[list], tuple[int, bool] | None]  # items -> (status, store first?) or None to pass


@dataclass
class Gate:
    """ASGI wrapper over the real API: records the event ids of every POST and answers
    the next ones per ``rules`` (a status, optionally after letting the API store the
    request: an answer lost on the way back)."""

    app: object
    rules: list[Rule] = field(default_factory=list)
    attempts: list[list[str]] = field(default_factory=list)

    def fail_next(self, times: int, status: int = 503, *, after_storing: bool = False) -> None:
        self.rules.extend([lambda items: (status, after_storing)] * times)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        items = orjson.loads(body)
        self.attempts.append([item.get("event_id") for item in items])
        verdict = self.rules.pop(0)(items) if self.rules else None

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        if verdict is None:
            return await self.app(scope, replay, send)
        status, store_first = verdict
        if store_first:
            async def discard(message):
                pass

            await self.app(scope, replay, discard)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"0")]})
        await send({"type": "http.response.body", "body": b'{"error":"gate","detail":"failed on purpose"}'})


@dataclass
class Api:
    url: str
    gate: Gate
    store: SQLiteEventStore
    key: str  # an emit key

    def stored_ids(self) -> list[str]:
        return [str(recorded.event_id) for recorded in self.store.read_all()]


@pytest.fixture
def api(tmp_path):
    store = SQLiteEventStore(tmp_path / "events.db")
    settings = Settings(data=tmp_path, store_url=f"sqlite:///{tmp_path / 'events.db'}", demo=False)
    gate = Gate(create_app(store=store, settings=settings))
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(gate, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield Api(base_url(sock), gate, store, make_key(tmp_path, "emit", name="emitter test"))
    server.should_exit = True
    thread.join(15)
    sock.close()
    store.close()


def touch(n: int = 0, **overrides) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": "ad_clicked", "occurred_at": f"2024-05-02T09:{n % 60:02d}:00Z",
            "anonymous_id": f"cookie:{n}", "channel": "google_ads", "campaign": "spring", **overrides}


def quick(api: Api, **options) -> HttpEmitter:
    options.setdefault("backoff", 0.01)
    options.setdefault("max_backoff", 0.05)
    options.setdefault("api_key", api.key)
    return HttpEmitter(api.url, **options)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_server_failing_the_first_requests__emitter_retries_with_the_same_event_ids(api, status):
    api.gate.fail_next(2, status)
    events = [touch(n) for n in range(3)]

    with quick(api) as emitter:
        emitter.emit_many(events)

    assert len(api.gate.attempts) == 3
    assert api.gate.attempts[0] == api.gate.attempts[1] == api.gate.attempts[2] == [e["event_id"] for e in events]
    assert sorted(api.stored_ids()) == sorted(e["event_id"] for e in events)
    assert emitter.stats.retries == 2 and emitter.stats.accepted == 3


def test_answer_lost_after_the_server_stored__retry_stores_nothing_twice(api):
    api.gate.fail_next(1, 503, after_storing=True)
    events = [touch(n) for n in range(4)]

    with quick(api) as emitter:
        emitter.emit_many(events)

    assert sorted(api.stored_ids()) == sorted(e["event_id"] for e in events)
    assert (emitter.stats.accepted, emitter.stats.duplicates) == (0, 4)


def test_event_without_an_id__gets_one_before_the_first_attempt_and_keeps_it(api):
    api.gate.fail_next(1)
    event = touch()
    del event["event_id"]

    with quick(api) as emitter:
        event_id = emitter.emit(event)

    assert uuid.UUID(event_id)
    assert api.gate.attempts == [[event_id], [event_id]]
    assert api.stored_ids() == [event_id]
    assert "event_id" not in event


def test_invalid_event__raises_with_the_servers_field_and_reason_and_the_valid_ones_are_stored(api):
    good, bad = touch(1), touch(2, occurred_at="2024-05-02T09:30:00")
    emitter = quick(api)
    emitter.emit_many([good, bad])

    with pytest.raises(EventsRejected) as raised:
        emitter.flush()

    rejected = raised.value.rejected
    assert [(r.event_id, [e.field for e in r.errors]) for r in rejected] == [(bad["event_id"], ["occurred_at"])]
    assert "timezone" in rejected[0].errors[0].reason
    assert raised.value.status == 422 and emitter.pending == 0
    assert api.stored_ids() == [good["event_id"]]
    assert sum(bad["event_id"] in attempt for attempt in api.gate.attempts) == 1


def test_event_id_sent_again_with_other_content__is_refused_and_the_others_are_stored(api):
    original = touch(1)
    first = quick(api)
    first.emit(original)
    first.flush()
    changed, fresh = {**original, "channel": "changed"}, touch(2)
    emitter = quick(api)
    emitter.emit_many([changed, fresh])

    with pytest.raises(EventsRejected) as raised:
        emitter.flush()

    rejected = raised.value.rejected
    assert [(r.event_id, [e.field for e in r.errors]) for r in rejected] == [(original["event_id"], ["event_id"])]
    assert "other content" in rejected[0].errors[0].reason
    assert raised.value.status == 409 and emitter.pending == 0
    assert api.stored_ids() == [original["event_id"], fresh["event_id"]]


def test_other_client_error__is_not_retried(api):
    api.gate.fail_next(1, 400)
    emitter = quick(api)
    emitter.emit(touch())

    with pytest.raises(EventsRejected) as raised:
        emitter.flush()

    assert raised.value.status == 400 and "failed on purpose" in str(raised.value)
    assert len(api.gate.attempts) == 1 and api.stored_ids() == []


def test_server_failing_past_max_retries__emit_failed_and_events_stay_pending_for_a_later_flush(api):
    api.gate.fail_next(3)
    events = [touch(n) for n in range(5)]
    emitter = quick(api, max_retries=2)
    emitter.emit_many(events)

    with pytest.raises(EmitFailed, match="HTTP 503"):
        emitter.flush()
    assert emitter.pending == 5 and api.stored_ids() == []

    emitter.close()

    assert emitter.pending == 0
    assert sorted(api.stored_ids()) == sorted(e["event_id"] for e in events)
    assert len({tuple(attempt) for attempt in api.gate.attempts}) == 1


def test_body_too_large__batch_is_split_until_the_server_takes_it(api):
    api.gate.rules.extend([lambda items: (413, False) if len(items) > 2 else None] * 10)
    events = [touch(n) for n in range(6)]

    with quick(api) as emitter:
        emitter.emit_many(events)

    assert sorted(api.stored_ids()) == sorted(e["event_id"] for e in events)
    assert [len(attempt) for attempt in api.gate.attempts] == [6, 3, 1, 2, 3, 1, 2]


def test_full_batches__are_sent_as_they_fill_and_the_rest_on_close(api):
    emitter = quick(api, batch_size=10)

    emitter.emit_many(touch(n) for n in range(25))

    assert [len(a) for a in api.gate.attempts] == [10, 10] and emitter.pending == 5
    emitter.close()
    assert [len(a) for a in api.gate.attempts] == [10, 10, 5] and len(api.stored_ids()) == 25


def test_api_key__is_sent_as_a_bearer_token_and_without_one_the_batch_is_refused_not_retried(api):
    with quick(api) as emitter:
        emitter.emit(touch(1))
    keyless = quick(api, api_key=None)
    keyless.emit(touch(2))

    with pytest.raises(EventsRejected) as raised:
        keyless.flush()

    assert len(api.stored_ids()) == 1
    assert raised.value.status == 401 and len(api.gate.attempts) == 2


def test_unreachable_server__connection_errors_are_retried_then_reported():
    emitter = HttpEmitter(f"http://127.0.0.1:{free_port()}", max_retries=2, timeout=1, backoff=0.01, max_backoff=0.05)
    emitter.emit(touch())

    with pytest.raises(EmitFailed, match="failed 3 times") as raised:
        emitter.flush()

    assert raised.value.pending == 1 and emitter.stats.retries == 2


def test_kafka_emitter__produces_wire_json_keyed_by_identity(kafka_broker, unique_name, read_topic):
    events = [touch(1), touch(2, customer_id="c-7"), touch(3)]

    with KafkaEmitter(kafka_broker.bootstrap, topic=unique_name) as emitter:
        ids = emitter.emit_many(events)

    records = read_topic(kafka_broker.bootstrap, unique_name, until=lambda rs: len(rs) >= 3)
    by_id = {REGISTRY.decode_json(r.value).event_id: r for r in records}
    assert sorted(str(i) for i in by_id) == sorted(ids)
    assert {r.key for r in records} == {b"anonymous-cookie:1", b"customer-c-7", b"anonymous-cookie:3"}
    assert all(REGISTRY.decode_json(r.value).stream.encode() == r.key for r in records)


def test_kafka_emitter__refuses_an_event_without_identity_before_sending(kafka_broker, unique_name):
    event = touch()
    del event["anonymous_id"]

    with KafkaEmitter(kafka_broker.bootstrap, topic=unique_name) as emitter:
        with pytest.raises(ValueError, match="customer_id or anonymous_id"):
            emitter.emit(event)
        assert emitter.pending == 0
