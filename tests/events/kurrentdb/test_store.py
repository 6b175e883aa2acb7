"""The KurrentDB adapter against a real KurrentDB server: the store contract, and
what only this adapter does (namespaces, seals, cold-cache idempotency, positions
that fall between events, events other applications wrote).

Runs when ``TOUCHPOINTS_EVENTSTORE_URL`` names a server, e.g.
``esdb://localhost:2113?Tls=false``; skipped with that reason otherwise. Every test
gets its own namespace, so runs share one server without seeing each other's events.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import kurrentdbclient
import pytest

from events.hashing import GENESIS, chain
from events.kurrentdb.store import KurrentDBEventStore
from events.kurrentdb.chain import canonical
from events.kurrentdb.mapping import ForeignEvent, parse_url, stored_stream_name
from events.store import StreamState, WrongExpectedVersion
from tests.events.contract import EventStoreContract, new_event, new_events

SKIP_REASON = "TOUCHPOINTS_EVENTSTORE_URL is not set: no KurrentDB server to run the store contract against"


def server_url() -> str:
    url = os.environ.get("TOUCHPOINTS_EVENTSTORE_URL", "").strip()
    if not url:
        pytest.skip(SKIP_REASON)
    return url


def namespaced(url: str, namespace: str, **extra: str) -> str:
    """``url`` with our namespace (replacing any it had) and extra parameters."""
    parts = urlsplit(url)
    mine = {"namespace", *(key.lower() for key in extra)}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in mine]
    query += [("namespace", namespace), *extra.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe="/:,"), ""))


def unique_namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def raw_client(url: str) -> kurrentdbclient.KurrentDBClient:
    """The bare client on the same server, to write as another application would."""
    return kurrentdbclient.KurrentDBClient(uri=parse_url(url).client_uri)


class TestKurrentDBEventStore(EventStoreContract):
    atomic_multi_stream_batch = False  # stream by stream (see events/kurrentdb/store.py)
    fresh_store = True  # a fresh namespace per test is an empty log
    hash_in_read_stream = False  # the chain is computed over $all order

    @pytest.fixture
    def store(self) -> Iterator[KurrentDBEventStore]:
        with KurrentDBEventStore.open(namespaced(server_url(), unique_namespace())) as store:
            yield store


class TestKurrentDBSpecifics:
    @pytest.fixture
    def url(self) -> str:
        return namespaced(server_url(), unique_namespace(), sealEvery="3")

    @pytest.fixture
    def store(self, url: str) -> Iterator[KurrentDBEventStore]:
        with KurrentDBEventStore.open(url) as store:
            yield store

    def test_namespaces__keep_two_logs_apart_on_one_server(self, store, url):
        with KurrentDBEventStore.open(namespaced(url, unique_namespace())) as neighbour:
            mine = store.append("customer-anna", new_events(2), expected_version=StreamState.ANY)
            neighbour.append("customer-anna", new_events(1), expected_version=StreamState.ANY)

            assert [e.event_id for e in store.read_all()] == [o.event_id for o in mine.outcomes]
            assert store.stream_version("customer-anna") == 1
            assert neighbour.stream_version("customer-anna") == 0

    def test_duplicates__are_found_by_a_store_that_never_saw_them(self, store, url):
        events = new_events(2)
        original = store.append("customer-anna", events, expected_version=StreamState.NO_STREAM)

        with KurrentDBEventStore.open(url) as another_process:
            retry = another_process.append("customer-anna", events, expected_version=StreamState.NO_STREAM)

        assert all(o.duplicate for o in retry.outcomes)
        assert [(o.position, o.stream_version) for o in retry.outcomes] == [
            (o.position, o.stream_version) for o in original.outcomes
        ]

    def test_expected_version__a_writer_with_a_stale_view_is_refused_by_the_server(self, store, url):
        store.append("customer-anna", new_events(1), expected_version=StreamState.NO_STREAM)
        with KurrentDBEventStore.open(url) as other:
            other.append("customer-anna", new_events(1), expected_version=0)

        with pytest.raises(WrongExpectedVersion) as conflict:
            store.append("customer-anna", new_events(1), expected_version=0)

        assert conflict.value.actual == 1
        assert store.stream_version("customer-anna") == 1

    def test_read_all__from_a_position_between_two_events_starts_at_the_next(self, store, url):
        outcomes = store.append("customer-anna", new_events(3), expected_version=StreamState.ANY).outcomes

        with KurrentDBEventStore.open(url) as cold:
            read = list(cold.read_all(outcomes[0].position + 1))

        assert [e.event_id for e in read] == [o.event_id for o in outcomes[1:]]

    def test_read_all__hashes_do_not_depend_on_where_the_read_starts(self, store, url):
        outcomes = store.append("customer-anna", new_events(7), expected_version=StreamState.ANY).outcomes
        whole = list(store.read_all())

        with KurrentDBEventStore.open(url) as cold:
            tail = list(cold.read_all(outcomes[5].position))

        assert [e.hash for e in tail] == [e.hash for e in whole[5:]]

    def test_subscribe__from_a_position_between_two_events_starts_at_the_next(self, store):
        outcomes = store.append("customer-anna", new_events(2), expected_version=StreamState.ANY).outcomes
        subscription = store.subscribe(outcomes[0].position + 1)
        received = []
        consumer = threading.Thread(target=lambda: received.extend(subscription), daemon=True)
        consumer.start()
        live = store.append("customer-anna", new_events(1), expected_version=1).outcomes
        while len(received) < 2 and consumer.is_alive():
            consumer.join(0.01)
        subscription.stop()
        consumer.join(10)

        assert [e.event_id for e in received] == [outcomes[1].event_id, live[0].event_id]

    def test_seals__are_written_every_seal_every_events_and_verify(self, store):
        store.append("customer-anna", new_events(7), expected_version=StreamState.ANY)

        list(store.read_all())
        report = store.verify_seals()

        assert [s.count for s in store.seals()] == [3, 6]
        assert report.ok and report.events == 7 and report.unsealed_events == 1

    def test_seal__seals_the_head_on_demand(self, store):
        outcomes = store.append("customer-anna", new_events(2), expected_version=StreamState.ANY).outcomes

        seal = store.seal()

        assert seal is not None and (seal.position, seal.count) == (outcomes[-1].position, 2)
        assert store.verify_seals().unsealed_events == 0

    def test_hash_chain__links_from_the_genesis_across_seals(self, store):
        store.append("customer-anna", new_events(8), expected_version=StreamState.ANY)

        previous = GENESIS
        for event in store.read_all():
            assert event.hash == chain(previous, canonical(event))
            previous = event.hash

    def test_count__is_the_number_of_events_in_the_namespace(self, store):
        store.append("customer-anna", new_events(4), expected_version=StreamState.ANY)
        store.append("customer-ben", new_events(1), expected_version=StreamState.ANY)

        assert store.count() == 5

    def test_foreign_events__are_skipped_by_read_all_and_refused_by_read_stream(self, store, url):
        ours = store.append("customer-anna", [new_event()], expected_version=StreamState.ANY).outcomes
        client = raw_client(url)
        try:
            client.append_to_stream(
                stored_stream_name(store.namespace, "customer-anna"),
                events=[kurrentdbclient.NewEvent(type="SomethingElse", data=b"{}")],
                current_version=kurrentdbclient.StreamState.ANY,
                timeout=10,
            )
        finally:
            client.close()

        assert [e.event_id for e in store.read_all()] == [ours[0].event_id]
        with pytest.raises(ForeignEvent):
            list(store.read_stream("customer-anna"))
