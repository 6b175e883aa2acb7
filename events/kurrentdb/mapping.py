"""Pure translation between the store port and the ``kurrentdbclient`` types.

No I/O here: URL parsing, stream naming, event mapping in both directions,
expected-version mapping and error translation, so all of it is unit-tested
without a KurrentDB server (``tests/events/kurrentdb/test_mapping.py``).

Stored event metadata is one flat JSON object whose values are all strings
(KurrentDB 25.1's multi-stream append accepts nothing else, so the format stays
usable there): our envelope fields under ``tp.*`` keys and the platform's own
``NewEvent.metadata`` kept verbatim as a string under ``tp.metadata`` (a string,
not a nested object, so the bytes the hash chain covers come back exactly).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import kurrentdbclient
import orjson
from kurrentdbclient import exceptions as kx
from kurrentdbclient.connection_spec import ConnectionSpec

from events.times import utc_text
from events.store import (
    EventStoreError,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StoreUnavailable,
    StreamState,
    WrongExpectedVersion,
)

# The forms ``events.factory`` routes here (the client also knows ``kdb://``, ``kdb+discover://``).
SCHEMES = ("esdb", "esdb+discover", "kurrentdb", "kurrentdb+discover")

FORMAT_VERSION = "1"
KEY_FORMAT = "tp.v"
KEY_SCHEMA_VERSION = "tp.schema_version"
KEY_OCCURRED_AT = "tp.occurred_at"
KEY_APPENDED_AT = "tp.appended_at"
KEY_PLATFORM = "tp.metadata"

SEAL_TYPE = "touchpoints.seal"
SEAL_STREAM = "touchpoints.seals"
DEFAULT_SEAL_EVERY = 10_000
DEFAULT_TIMEOUT = 30.0

_NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# Our own query parameters (case-insensitive); everything else goes to the client.
_OWN_PARAMETERS = {"namespace": "namespace", "sealevery": "seal_every", "timeout": "timeout"}


class InvalidStoreURL(EventStoreError, ValueError):
    """A KurrentDB store URL that cannot be used; the message names the part and why
    (the password, if any, is masked)."""


class UnstorableEvent(EventStoreError, ValueError):
    """An event this adapter cannot store as given; names the event id and the field."""

    def __init__(self, event_id: UUID, field: str, reason: str):
        self.event_id = event_id
        self.field = field
        self.reason = reason
        super().__init__(f"event {event_id}: {field}: {reason}")


class ForeignEvent(EventStoreError):
    """A stored event that touchpoints did not write (its metadata lacks our envelope)."""


# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KurrentDBConfig:
    """What ``KurrentDBEventStore.open`` needs, parsed from the store URL.

    ``client_uri`` is the URL the client receives (our own parameters removed);
    ``namespace`` prefixes every stream name (``<namespace>:<stream>``) so several
    deployments, or test runs, share one database without seeing each other;
    ``seal_every`` is how many events apart the chain seals are written (0: never);
    ``timeout`` bounds each read or append call, in seconds."""

    client_uri: str = field(repr=False)
    namespace: str | None = None
    seal_every: int = DEFAULT_SEAL_EVERY
    timeout: float = DEFAULT_TIMEOUT

    @property
    def display_uri(self) -> str:
        return mask_password(self.client_uri)

    def __repr__(self) -> str:
        return (
            f"KurrentDBConfig({self.display_uri!r}, namespace={self.namespace!r}, "
            f"seal_every={self.seal_every}, timeout={self.timeout})"
        )


def parse_url(url: str) -> KurrentDBConfig:
    """Parse ``esdb://[user:pass@]host[:port][,host:port...][?Tls=false&...]`` and the
    ``esdb+discover``, ``kurrentdb``, ``kurrentdb+discover`` forms. Our parameters:
    ``namespace``, ``sealEvery``, ``timeout``; the client's (``Tls``, ``TlsCaFile``,
    ``NodePreference``, ``DefaultDeadline``...) are checked by the client's own
    parser here, before anything connects."""
    shown = mask_password(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        accepted = ", ".join(f"{s}://" for s in SCHEMES)
        raise InvalidStoreURL(f"{shown}: scheme must be one of {accepted}")
    if not parts.netloc.rpartition("@")[2].strip(", "):
        raise InvalidStoreURL(f"{shown}: no host (expected e.g. esdb://localhost:2113?Tls=false)")
    if parts.path not in ("", "/"):
        raise InvalidStoreURL(f"{shown}: unexpected path {parts.path!r} (a KurrentDB URL names hosts, not a path)")
    own: dict[str, str] = {}
    passed: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        name = _OWN_PARAMETERS.get(key.lower())
        if name is None:
            passed.append((key, value))
        elif name in own:
            raise InvalidStoreURL(f"{shown}: {key} is given twice")
        else:
            own[name] = value
    client_uri = urlunsplit((scheme, parts.netloc, "", urlencode(passed, safe="/:,"), ""))
    try:
        ConnectionSpec(client_uri)
    except ValueError as error:
        reason = str(error).removesuffix(f": {client_uri}")  # the client repeats the URL, password and all
        raise InvalidStoreURL(f"{shown}: {_explain_client_error(reason)}") from None
    return KurrentDBConfig(
        client_uri=client_uri,
        namespace=_namespace(shown, own.get("namespace")),
        seal_every=_non_negative_int(shown, "sealEvery", own.get("seal_every"), DEFAULT_SEAL_EVERY),
        timeout=_positive_seconds(shown, own.get("timeout")),
    )


def mask_password(url: str) -> str:
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit((parts.scheme, f"{user}:***@{hosts}", parts.path, parts.query, parts.fragment))


def _explain_client_error(message: str) -> str:
    if message.startswith("Username and password are required"):
        return (
            "a TLS connection (the default) needs user:password@ in the URL; "
            "for an insecure server add ?Tls=false"
        )
    if message.startswith("Unknown field"):
        return (
            f"{message} (the client's fields are Tls, TlsCaFile, NodePreference, DefaultDeadline...; "
            "touchpoints adds namespace, sealEvery, timeout)"
        )
    return message


def _namespace(shown: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not _NAMESPACE_PATTERN.match(value):
        raise InvalidStoreURL(f"{shown}: namespace must be 1-64 of A-Z a-z 0-9 _ . -, got {value!r}")
    return value


def _non_negative_int(shown: str, key: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidStoreURL(f"{shown}: {key} must be an integer, got {value!r}") from None
    if number < 0:
        raise InvalidStoreURL(f"{shown}: {key} must be 0 or more, got {number}")
    return number


def _positive_seconds(shown: str, value: str | None) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidStoreURL(f"{shown}: timeout must be a number of seconds, got {value!r}") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise InvalidStoreURL(f"{shown}: timeout must be a finite number of seconds above 0, got {value!r}")
    return seconds


# --- stream names ----------------------------------------------------------------------


def stored_stream_name(namespace: str | None, stream: str) -> str:
    """The KurrentDB stream holding the port's ``stream``."""
    if not stream:
        raise EventStoreError("stream name must not be empty")
    if stream.startswith("$"):
        raise EventStoreError(f"stream {stream!r}: names starting with '$' are KurrentDB system streams")
    stored = f"{namespace}:{stream}" if namespace else stream
    if stored == seal_stream_name(namespace):
        raise EventStoreError(f"stream {stream!r} is reserved for the hash-chain seals")
    return stored


def port_stream_name(namespace: str | None, stored: str) -> str:
    if namespace:
        return stored.removeprefix(f"{namespace}:")
    return stored


def seal_stream_name(namespace: str | None) -> str:
    """Outside the namespace prefix, so namespace-filtered reads of ``$all`` skip it."""
    return f"{SEAL_STREAM}:{namespace}" if namespace else SEAL_STREAM


def read_filter(namespace: str | None) -> dict[str, object]:
    """Server-side filter for reads of ``$all``: our namespace's streams, or (no
    namespace) everything but system events and seals. Events other applications
    wrote are then skipped client-side (``decode_metadata`` returns None)."""
    if namespace:
        return {"filter_include": (f"{namespace}:",), "filter_by_stream_name": True, "filter_by_prefix": True}
    return {"filter_exclude": (*kurrentdbclient.DEFAULT_EXCLUDE_FILTER, re.escape(SEAL_TYPE))}


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredMetadata:
    """Our envelope fields, as kept in a stored event's metadata."""

    schema_version: int
    occurred_at: datetime
    appended_at: datetime
    platform: bytes


def to_client_event(event: NewEvent, appended_at: datetime) -> kurrentdbclient.NewEvent:
    """The client's ``NewEvent``: same id (the server's idempotency key), the wire type
    name, the canonical body as JSON data, our envelope in the metadata."""
    if not event.type or event.type.startswith("$") or event.type == SEAL_TYPE:
        raise UnstorableEvent(event.event_id, "type", f"{event.type!r} is empty, a '$' system type or reserved")
    return kurrentdbclient.NewEvent(
        type=event.type,
        data=event.data,
        metadata=encode_metadata(event, appended_at),
        content_type="application/json",
        id=event.event_id,
    )


def encode_metadata(event: NewEvent, appended_at: datetime) -> bytes:
    if event.occurred_at.tzinfo is None or event.occurred_at.utcoffset() is None:
        raise UnstorableEvent(event.event_id, "occurred_at", "must be timezone-aware")
    if isinstance(event.schema_version, bool) or not isinstance(event.schema_version, int) or event.schema_version < 1:
        raise UnstorableEvent(event.event_id, "schema_version", f"must be a positive integer, got {event.schema_version!r}")
    try:
        platform = event.metadata.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnstorableEvent(event.event_id, "metadata", f"must be UTF-8 JSON ({error})") from None
    return orjson.dumps(
        {
            KEY_FORMAT: FORMAT_VERSION,
            KEY_SCHEMA_VERSION: str(event.schema_version),
            KEY_OCCURRED_AT: utc_text(event.occurred_at),
            KEY_APPENDED_AT: utc_text(appended_at),
            KEY_PLATFORM: platform,
        }
    )


def decode_metadata(raw: bytes) -> StoredMetadata | None:
    """Our envelope, or None for an event touchpoints did not write. An event that
    claims our format but is malformed raises ``EventStoreError`` naming the field."""
    try:
        fields = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(fields, dict) or fields.get(KEY_FORMAT) != FORMAT_VERSION:
        return None
    try:
        return StoredMetadata(
            schema_version=int(fields[KEY_SCHEMA_VERSION]),
            occurred_at=_parse_utc(fields[KEY_OCCURRED_AT]),
            appended_at=_parse_utc(fields[KEY_APPENDED_AT]),
            platform=str(fields[KEY_PLATFORM]).encode("utf-8"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise EventStoreError(f"stored event metadata is malformed: {type(error).__name__}: {error}") from None


def to_port_event(
    recorded: kurrentdbclient.RecordedEvent,
    namespace: str | None,
    metadata: StoredMetadata | None = None,
    hash: bytes | None = None,
) -> RecordedEvent:
    """The port's envelope of a stored event. ``recorded_at`` is the server's commit
    timestamp (the log's own clock, non-decreasing in commit order), to the
    microsecond; the adapter's send time is the fallback if the server gave none."""
    if metadata is None:
        try:
            metadata = decode_metadata(recorded.metadata)
        except EventStoreError as error:
            raise EventStoreError(f"event {recorded.id} in {recorded.stream_name!r}: {error}") from None
        if metadata is None:
            raise ForeignEvent(
                f"event {recorded.id} in stream {recorded.stream_name!r} (type {recorded.type!r}) "
                "was not written by touchpoints: its metadata has no touchpoints envelope"
            )
    recorded_at = recorded.recorded_at
    if recorded_at is None:
        recorded_at = metadata.appended_at
    return RecordedEvent(
        position=recorded.commit_position,
        stream=port_stream_name(namespace, recorded.stream_name),
        stream_version=recorded.stream_position,
        event_id=recorded.id,
        type=recorded.type,
        schema_version=metadata.schema_version,
        occurred_at=metadata.occurred_at,
        recorded_at=recorded_at.astimezone(timezone.utc),
        data=recorded.data,
        metadata=metadata.platform,
        hash=hash,
    )


def _parse_utc(text: object) -> datetime:
    if not isinstance(text, str):
        raise TypeError(f"expected a timestamp string, got {type(text).__name__}")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone")
    return moment.astimezone(timezone.utc)


# --- expected versions and errors ---------------------------------------------------


def client_expected_version(expected: ExpectedVersion) -> int | kurrentdbclient.StreamState:
    """The port's expected version as the client's ``current_version``."""
    if isinstance(expected, StreamState):
        return kurrentdbclient.StreamState[expected.name]
    if isinstance(expected, bool) or not isinstance(expected, int):
        raise TypeError(f"expected_version must be an int or a StreamState, got {expected!r}")
    if expected < 0:
        raise ValueError(f"expected_version must be >= 0 (versions start at 0), got {expected}")
    return expected


def satisfies(expected: ExpectedVersion, current: int | None) -> bool:
    """Whether a stream at version ``current`` (None: no stream) meets ``expected``."""
    if expected is StreamState.ANY:
        return True
    if expected is StreamState.NO_STREAM:
        return current is None
    if expected is StreamState.EXISTS:
        return current is not None
    return current == expected


_UNREACHABLE = (
    kx.ServiceUnavailableError,
    kx.DiscoveryFailedError,
    kx.NodeIsNotLeaderError,
    kx.CancelledError,
    kx.AbortedByServerError,
    kx.ExceptionThrownByHandlerError,
    kx.InternalError,
)
_REFUSED = (kx.UnauthenticatedError, kx.AccessDeniedError)
_TOO_LARGE = (
    kx.MaximumAppendSizeExceededError,
    kx.RecordMaxSizeExceededError,
    kx.TransactionMaxSizeExceededError,
)


def translate_error(
    error: BaseException,
    *,
    stream: str | None = None,
    expected: ExpectedVersion | None = None,
    operation: str = "KurrentDB call",
) -> EventStoreError:
    """The port's error for a client error (the caller raises it ``from`` the original).

    Time-outs are reported as unavailable with the note that an append's outcome is
    unknown: retrying is safe because appends are idempotent by ``event_id``."""
    if isinstance(error, EventStoreError):
        return error
    where = f" (stream {stream!r})" if stream else ""
    if isinstance(error, kx.WrongCurrentVersionError):
        actual = error.actual_version if isinstance(error.actual_version, int) else None
        return WrongExpectedVersion(stream or error.stream_name or "?", _port_expected(expected, error), actual)
    if isinstance(error, kx.DeadlineExceededError):
        unknown = (
            ": it may or may not have been written, and retrying it is safe (appends are idempotent by event_id)"
            if operation.startswith("append")
            else ""
        )
        return StoreUnavailable(f"{operation}{where} timed out{unknown}")
    if isinstance(error, _UNREACHABLE):
        return StoreUnavailable(f"{operation}{where}: KurrentDB is unreachable or not the leader: {_detail(error)}")
    if isinstance(error, _REFUSED):
        return StoreUnavailable(f"{operation}{where}: KurrentDB refused the credentials: {_detail(error)}")
    if isinstance(error, (kx.StreamIsDeletedError, kx.StreamTombstonedError)):
        return EventStoreError(f"{operation}{where}: the stream was deleted (tombstoned) in KurrentDB")
    if isinstance(error, _TOO_LARGE):
        return EventStoreError(f"{operation}{where}: too large for KurrentDB: {_detail(error)}")
    if isinstance(error, ValueError) and "closed" in str(error).lower():
        return StoreUnavailable(f"{operation}{where}: the KurrentDB connection is closed")
    return EventStoreError(f"{operation}{where} failed: {type(error).__name__}: {_detail(error)}")


def _port_expected(expected: ExpectedVersion | None, error: kx.WrongCurrentVersionError) -> ExpectedVersion:
    if expected is not None:
        return expected
    sent = error.expected_version
    if isinstance(sent, kurrentdbclient.StreamState):
        return StreamState[sent.name]
    return sent if isinstance(sent, int) else StreamState.ANY


def _detail(error: BaseException) -> str:
    return str(error) or type(error).__name__
