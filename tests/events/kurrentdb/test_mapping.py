"""KurrentDB adapter, everything that needs no server: URL parsing, stream naming,
events to and from the client's types, expected versions, error translation, and
``open`` failing cleanly against real sockets that are not a KurrentDB server.

The client's exception classes are constructed directly: they are the boundary.
Nothing here talks to KurrentDB; ``test_store.py`` does, when
``TOUCHPOINTS_EVENTSTORE_URL`` names a server.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from uuid import UUID, uuid4

import kurrentdbclient
import orjson
import pytest
from kurrentdbclient import exceptions as kx

from events.factory import open_store
from events.kurrentdb.store import KurrentDBEventStore
from events.kurrentdb.mapping import (
    KEY_PLATFORM,
    SEAL_TYPE,
    ForeignEvent,
    InvalidStoreURL,
    UnstorableEvent,
    client_expected_version,
    decode_metadata,
    parse_url,
    port_stream_name,
    read_filter,
    satisfies,
    seal_stream_name,
    stored_stream_name,
    to_client_event,
    to_port_event,
    translate_error,
)
from events.store import EventStoreError, NewEvent, StoreUnavailable, StreamState, WrongExpectedVersion

OCCURRED = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
SENT = datetime(2026, 3, 1, 7, 31, 0, 1, tzinfo=timezone.utc)
SERVER_TIME = datetime(2026, 3, 1, 7, 31, 0, 2500, tzinfo=timezone.utc)


def new_event(**overrides: object) -> NewEvent:
    fields: dict[str, object] = {
        "event_id": UUID("0193b6a8-1f2e-7c3d-8e4f-5a6b7c8d9e0f"),
        "type": "ad_clicked",
        "schema_version": 1,
        "occurred_at": OCCURRED,
        "data": b'{"event_id":"0193b6a8-1f2e-7c3d-8e4f-5a6b7c8d9e0f","channel":"search"}',
        "metadata": b'{ "trace": "abc",  "note": "caf\xc3\xa9" }',
    }
    fields.update(overrides)
    return NewEvent(**fields)  # type: ignore[arg-type]


def as_recorded(
    sent: kurrentdbclient.NewEvent,
    *,
    stream: str = "customer-42",
    stream_position: int = 3,
    commit_position: int = 18_446_744_073_709_551,
    recorded_at: datetime | None = SERVER_TIME,
) -> kurrentdbclient.RecordedEvent:
    """What the client hands back when reading an event the server stored."""
    return kurrentdbclient.RecordedEvent(
        type=sent.type,
        data=sent.data,
        metadata=sent.metadata,
        content_type=sent.content_type,
        id=sent.id,
        stream_name=stream,
        stream_position=stream_position,
        commit_position=commit_position,
        prepare_position=commit_position,
        recorded_at=recorded_at,
    )


# --- URL parsing -------------------------------------------------------------------------


def test_parse_url__insecure_single_node_goes_to_the_client_unchanged() -> None:
    config = parse_url("esdb://localhost:2113?tls=false")

    assert config.client_uri == "esdb://localhost:2113?tls=false"
    assert (config.namespace, config.seal_every, config.timeout) == (None, 10_000, 30.0)


def test_parse_url__our_parameters_are_taken_out_of_the_client_uri() -> None:
    config = parse_url("kurrentdb://db1:2113?Tls=false&namespace=prod-eu&sealEvery=500&timeout=2.5")

    assert config.client_uri == "kurrentdb://db1:2113?Tls=false"
    assert (config.namespace, config.seal_every, config.timeout) == ("prod-eu", 500, 2.5)


def test_parse_url__our_parameter_names_ignore_case() -> None:
    config = parse_url("esdb://db1:2113?tls=false&NAMESPACE=blue&SealEvery=0")

    assert (config.namespace, config.seal_every) == ("blue", 0)


def test_parse_url__a_cluster_with_credentials_and_client_options_is_accepted() -> None:
    url = "esdb+discover://admin:changeit@cluster.example.com?NodePreference=follower&TlsCaFile=/etc/kdb/ca.pem"

    config = parse_url(url)

    assert config.client_uri == url


def test_parse_url__tls_without_credentials_is_refused_with_the_fix() -> None:
    with pytest.raises(InvalidStoreURL, match=r"needs user:password@ .* \?Tls=false"):
        parse_url("esdb://localhost:2113")


def test_parse_url__another_scheme_is_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(InvalidStoreURL, match=r"esdb://, esdb\+discover://, kurrentdb://, kurrentdb\+discover://"):
        parse_url("postgres://localhost:5432")


def test_parse_url__an_unknown_query_field_is_refused_naming_it() -> None:
    with pytest.raises(InvalidStoreURL, match="Unknown field in connection query string: COLOUR"):
        parse_url("esdb://localhost:2113?tls=false&colour=blue")


def test_parse_url__a_bad_client_value_is_refused() -> None:
    with pytest.raises(InvalidStoreURL, match="'maybe' not one of: true, false"):
        parse_url("esdb://localhost:2113?tls=maybe")


def test_parse_url__a_url_without_host_is_refused() -> None:
    with pytest.raises(InvalidStoreURL, match="no host"):
        parse_url("esdb://?tls=false")


def test_parse_url__a_path_is_refused() -> None:
    with pytest.raises(InvalidStoreURL, match="unexpected path '/events'"):
        parse_url("esdb://localhost:2113/events?tls=false")


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("namespace=has space", "namespace must be 1-64 of"),
        ("namespace=" + "n" * 65, "namespace must be 1-64 of"),
        ("sealEvery=-1", "sealEvery must be 0 or more"),
        ("sealEvery=ten", "sealEvery must be an integer"),
        ("timeout=0", "timeout must be a finite number of seconds above 0"),
        ("timeout=inf", "timeout must be a finite number of seconds above 0"),
        ("timeout=soon", "timeout must be a number of seconds"),
        ("namespace=a&namespace=b", "namespace is given twice"),
    ],
)
def test_parse_url__a_bad_touchpoints_parameter_is_refused_naming_it(query: str, reason: str) -> None:
    with pytest.raises(InvalidStoreURL, match=reason):
        parse_url(f"esdb://localhost:2113?tls=false&{query}")


@pytest.mark.parametrize(
    "url",
    [
        "esdb://admin:s3cret@localhost:2113?colour=blue",
        "esdb+discover://admin:s3cret@h1:2113,h2:2113",
        "esdb://admin:s3cret@localhost:2113?timeout=never",
    ],
)
def test_parse_url__the_password_never_shows_in_errors(url: str) -> None:
    with pytest.raises(InvalidStoreURL) as refused:
        parse_url(url)

    assert "s3cret" not in str(refused.value)
    assert "admin:***@" in str(refused.value)


def test_parse_url__the_password_never_shows_in_the_config_repr() -> None:
    assert "s3cret" not in repr(parse_url("esdb://admin:s3cret@localhost:2113"))


# --- opening, against real sockets that are not KurrentDB ------------------------------------


def test_open__a_refused_connection_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="unreachable"):
        KurrentDBEventStore.open(f"esdb://127.0.0.1:{closed_port()}?tls=false")


def test_open__an_endpoint_that_never_answers_times_out_as_store_unavailable(silent_port: int) -> None:
    with pytest.raises(StoreUnavailable, match="timed out"):
        KurrentDBEventStore.open(f"esdb://127.0.0.1:{silent_port}?tls=false&timeout=0.5")


def test_open__a_missing_certificate_file_is_an_invalid_url() -> None:
    with pytest.raises(InvalidStoreURL, match="cannot read a certificate or key file"):
        KurrentDBEventStore.open("esdb://admin:pw@127.0.0.1:2113?TlsCaFile=/nonexistent/ca.pem")


def test_open_store__routes_an_esdb_url_to_this_adapter() -> None:
    with pytest.raises(StoreUnavailable, match="KurrentDB is unreachable"):
        open_store(f"esdb://127.0.0.1:{closed_port()}?tls=false")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


# --- stream names and read filters ------------------------------------------------------------


def test_stored_stream_name__is_the_port_name_without_a_namespace() -> None:
    assert stored_stream_name(None, "anonymous-instagram:@anna") == "anonymous-instagram:@anna"


def test_stored_stream_name__is_prefixed_by_the_namespace_and_read_back_without_it() -> None:
    stored = stored_stream_name("test-7", "customer-42")

    assert stored == "test-7:customer-42"
    assert port_stream_name("test-7", stored) == "customer-42"


def test_stored_stream_name__refuses_kurrentdb_system_streams() -> None:
    with pytest.raises(EventStoreError, match="system streams"):
        stored_stream_name(None, "$all")


def test_stored_stream_name__refuses_the_seal_stream() -> None:
    with pytest.raises(EventStoreError, match="reserved"):
        stored_stream_name(None, seal_stream_name(None))


def test_seal_stream__lies_outside_the_namespace_prefix() -> None:
    assert not seal_stream_name("test-7").startswith("test-7:")


def test_read_filter__with_a_namespace_selects_its_streams_by_prefix() -> None:
    assert read_filter("test-7") == {
        "filter_include": ("test-7:",),
        "filter_by_stream_name": True,
        "filter_by_prefix": True,
    }


def test_read_filter__without_a_namespace_excludes_system_events_and_seals() -> None:
    excluded = read_filter(None)["filter_exclude"]

    assert set(kurrentdbclient.DEFAULT_EXCLUDE_FILTER) <= set(excluded)
    assert r"touchpoints\.seal" in excluded


# --- new events to the client -----------------------------------------------------------------


def test_to_client_event__keeps_id_type_and_body() -> None:
    event = new_event()

    sent = to_client_event(event, SENT)

    assert (sent.id, sent.type, sent.data, sent.content_type) == (
        event.event_id,
        "ad_clicked",
        event.data,
        "application/json",
    )


def test_to_client_event__metadata_is_a_flat_object_of_strings() -> None:
    fields = orjson.loads(to_client_event(new_event(schema_version=2), SENT).metadata)

    assert fields == {
        "tp.v": "1",
        "tp.schema_version": "2",
        "tp.occurred_at": "2026-03-01T07:30:15.123456Z",
        "tp.appended_at": "2026-03-01T07:31:00.000001Z",
        "tp.metadata": '{ "trace": "abc",  "note": "café" }',
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"occurred_at": datetime(2026, 3, 1, 9, 30)}, "occurred_at"),
        ({"type": "$metadata"}, "type"),
        ({"type": SEAL_TYPE}, "type"),
        ({"type": ""}, "type"),
        ({"metadata": b"\xff\xfe"}, "metadata"),
        ({"schema_version": 0}, "schema_version"),
    ],
)
def test_to_client_event__refuses_what_cannot_be_stored_naming_the_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(UnstorableEvent) as refused:
        to_client_event(new_event(**overrides), SENT)

    assert refused.value.field == field
    assert str(refused.value).startswith("event 0193b6a8-1f2e-7c3d-8e4f-5a6b7c8d9e0f: " + field)


# --- recorded events from the client ----------------------------------------------------------


def test_to_port_event__round_trips_every_field() -> None:
    event = new_event()

    recorded = to_port_event(as_recorded(to_client_event(event, SENT)), None)

    assert recorded.event_id == event.event_id
    assert (recorded.type, recorded.schema_version) == (event.type, event.schema_version)
    assert recorded.occurred_at == event.occurred_at
    assert recorded.occurred_at.tzinfo == timezone.utc
    assert (recorded.data, recorded.metadata) == (event.data, event.metadata)
    assert recorded.hash is None


def test_to_port_event__positions_are_the_servers_commit_and_stream_positions() -> None:
    recorded = to_port_event(
        as_recorded(to_client_event(new_event(), SENT), stream_position=7, commit_position=2**45 + 17), None
    )

    assert (recorded.position, recorded.stream_version) == (2**45 + 17, 7)


def test_to_port_event__recorded_at_is_the_servers_commit_time() -> None:
    recorded = to_port_event(as_recorded(to_client_event(new_event(), SENT)), None)

    assert recorded.recorded_at == SERVER_TIME


def test_to_port_event__recorded_at_falls_back_to_the_send_time_when_the_server_gives_none() -> None:
    recorded = to_port_event(as_recorded(to_client_event(new_event(), SENT), recorded_at=None), None)

    assert recorded.recorded_at == SENT


def test_to_port_event__removes_the_namespace_from_the_stream_name() -> None:
    raw = as_recorded(to_client_event(new_event(), SENT), stream="test-7:customer-42")

    assert to_port_event(raw, "test-7").stream == "customer-42"


def test_to_port_event__refuses_an_event_touchpoints_did_not_write() -> None:
    foreign = kurrentdbclient.NewEvent(type="OrderShipped", data=b"{}", metadata=b'{"$correlationId":"x"}', id=uuid4())

    with pytest.raises(ForeignEvent, match="was not written by touchpoints"):
        to_port_event(as_recorded(foreign), None)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'{"tp.v": "0"}'])
def test_decode_metadata__is_none_for_metadata_not_ours(raw: bytes) -> None:
    assert decode_metadata(raw) is None


def test_decode_metadata__names_the_problem_in_ours_when_malformed() -> None:
    fields = orjson.loads(to_client_event(new_event(), SENT).metadata)
    del fields[KEY_PLATFORM]

    with pytest.raises(EventStoreError, match="malformed: KeyError: 'tp.metadata'"):
        decode_metadata(orjson.dumps(fields))


# --- expected versions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "sent"),
    [
        (StreamState.ANY, kurrentdbclient.StreamState.ANY),
        (StreamState.NO_STREAM, kurrentdbclient.StreamState.NO_STREAM),
        (StreamState.EXISTS, kurrentdbclient.StreamState.EXISTS),
        (0, 0),
        (41, 41),
    ],
)
def test_client_expected_version__maps_each_kind(expected: object, sent: object) -> None:
    assert client_expected_version(expected) == sent  # type: ignore[arg-type]


def test_client_expected_version__refuses_a_negative_version() -> None:
    with pytest.raises(ValueError, match="versions start at 0"):
        client_expected_version(-1)


@pytest.mark.parametrize("expected", [True, "3", None, 2.0])
def test_client_expected_version__refuses_other_types(expected: object) -> None:
    with pytest.raises(TypeError, match="int or a StreamState"):
        client_expected_version(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expected", "current", "ok"),
    [
        (StreamState.ANY, None, True),
        (StreamState.ANY, 4, True),
        (StreamState.NO_STREAM, None, True),
        (StreamState.NO_STREAM, 0, False),
        (StreamState.EXISTS, None, False),
        (StreamState.EXISTS, 0, True),
        (3, 3, True),
        (3, 4, False),
        (0, None, False),
    ],
)
def test_satisfies__checks_the_expected_version_against_the_stream(
    expected: object, current: int | None, ok: bool
) -> None:
    assert satisfies(expected, current) is ok  # type: ignore[arg-type]


# --- error translation --------------------------------------------------------------------------


def test_translate_error__a_version_conflict_names_stream_expected_and_actual() -> None:
    error = kx.WrongCurrentVersionError("nope", stream_name="customer-42", actual_version=5, expected_version=3)

    translated = translate_error(error, stream="customer-42", expected=3)

    assert isinstance(translated, WrongExpectedVersion)
    assert (translated.stream, translated.expected, translated.actual) == ("customer-42", 3, 5)


def test_translate_error__a_conflict_on_a_missing_stream_reports_no_version() -> None:
    error = kx.WrongCurrentVersionError(
        "nope", stream_name="customer-42", actual_version=-1, expected_version=kurrentdbclient.StreamState.EXISTS
    )

    translated = translate_error(error)

    assert isinstance(translated, WrongExpectedVersion)
    assert (translated.expected, translated.actual) == (StreamState.EXISTS, None)


@pytest.mark.parametrize(
    "error",
    [
        kx.ServiceUnavailableError("failed to connect to all addresses"),
        kx.SSLError("handshake failed"),
        kx.DiscoveryFailedError("no gossip"),
        kx.NodeIsNotLeaderError("follower", host="10.0.0.2", port=2113),
        kx.CancelledError("server shutting down"),
    ],
)
def test_translate_error__connection_trouble_is_store_unavailable(error: Exception) -> None:
    assert isinstance(translate_error(error), StoreUnavailable)


@pytest.mark.parametrize("error", [kx.AccessDeniedError(), kx.UnauthenticatedError("bad password")])
def test_translate_error__refused_credentials_are_store_unavailable(error: Exception) -> None:
    translated = translate_error(error)

    assert isinstance(translated, StoreUnavailable)
    assert "credentials" in str(translated)


def test_translate_error__an_append_time_out_says_a_retry_is_safe() -> None:
    translated = translate_error(kx.GrpcDeadlineExceededError("deadline"), stream="customer-1", operation="append")

    assert isinstance(translated, StoreUnavailable)
    assert "may or may not have been written, and retrying it is safe" in str(translated)


def test_translate_error__a_read_time_out_is_store_unavailable() -> None:
    translated = translate_error(kx.GrpcDeadlineExceededError("deadline"), operation="read of $all")

    assert isinstance(translated, StoreUnavailable)
    assert str(translated) == "read of $all timed out"


def test_translate_error__a_deleted_stream_is_an_error_not_an_outage() -> None:
    translated = translate_error(kx.StreamIsDeletedError("deleted"), stream="customer-1", operation="append")

    assert type(translated) is EventStoreError
    assert "deleted" in str(translated)


def test_translate_error__an_oversized_append_is_an_error_not_an_outage() -> None:
    translated = translate_error(kx.MaximumAppendSizeExceededError("Max size is 1048576"), operation="append")

    assert type(translated) is EventStoreError
    assert "too large" in str(translated)


def test_translate_error__a_closed_channel_is_store_unavailable() -> None:
    assert isinstance(translate_error(ValueError("Cannot invoke RPC on closed channel!")), StoreUnavailable)


def test_translate_error__anything_else_is_an_event_store_error_naming_it() -> None:
    translated = translate_error(kx.InvalidTransactionError("odd"))

    assert type(translated) is EventStoreError
    assert "InvalidTransactionError: odd" in str(translated)
