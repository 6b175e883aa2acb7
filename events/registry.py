"""The event registry: wire names to models, versions, upcasters, decoding.

All decoding goes through a registry, so HTTP, Kafka, replay and exports see
identical events. An upcaster is a plain ``dict -> dict`` step from schema
version N to N+1 of one type; they run before validation.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import metadata
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import orjson
from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import SchemaValidator

from events.models import CORE_EVENT_TYPES, PRIVACY_EVENT_TYPES, TRACKING_EVENT_TYPES, Event

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

PLUGIN_ENTRY_POINT_GROUP = "touchpoints.event_types"


class RegistryError(Exception):
    """A registration that would make decoding ambiguous."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason an event was refused: where (a dotted field path) and why."""

    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class InvalidEvent(ValueError):
    """An event that cannot be decoded; ``errors`` names every bad field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))


@dataclass
class EventRegistry:
    _models: dict[str, type[Event]] = field(default_factory=dict)
    _upcasters: dict[tuple[str, int], Upcaster] = field(default_factory=dict)
    # Built on first use, dropped on every registration and when pickled (see ``fast_validator``).
    _fast: Any = field(default=None, init=False, repr=False, compare=False)
    _fast_list: Any = field(default=None, init=False, repr=False, compare=False)
    # type -> (its model's JSON validator, its schema version): filled by ``decode_logged``
    _current: dict[str, tuple[Callable[[bytes], Event], int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # What ingestion does to validated events before encoding them (``ingest_ready``).
    _ingest_step: Callable[[list[Event]], list[Event]] | None = field(default=None, init=False, repr=False)
    _ingest_step_batches: bool = field(default=False, init=False, repr=False)  # see ``with_ingest_step``

    def __getstate__(self) -> dict[str, Any]:
        return {"_models": self._models, "_upcasters": self._upcasters, "_fast": None, "_fast_list": None,
                "_current": {}, "_ingest_step": self._ingest_step, "_ingest_step_batches": self._ingest_step_batches}

    def with_ingest_step(
        self, step: Callable[[list[Event]], list[Event]], *, large_batches: bool = False
    ) -> "EventRegistry":
        """A registry sharing this one's types whose ``ingest_ready`` runs ``step`` (sealing
        personal data: ``application.privacy``). It travels with the registry to the
        processes that decode ingestion, so every ingestion path applies it, once.
        ``large_batches``: the step costs less per event on larger batches (sealing commits the
        new identities' keys once per call), so a bulk decoder hands it whole blocks."""
        copy = EventRegistry(self._models, self._upcasters)
        copy._ingest_step = step
        copy._ingest_step_batches = large_batches
        return copy

    @property
    def ingest_step_prefers_large_batches(self) -> bool:
        return self._ingest_step_batches

    def ingest_ready(self, events: list[Event]) -> list[Event]:
        """Validated events as ingestion encodes them: through the ingest step, if any.
        Called once per event, right before encoding (``EncodedBatch.extend``)."""
        return events if self._ingest_step is None else self._ingest_step(events)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # --- registration ---------------------------------------------------------

    def register(self, model: type[Event]) -> type[Event]:
        """Register a model under its ``TYPE``; usable as a class decorator."""
        name = model.TYPE
        if not name:
            raise RegistryError(f"{model.__name__} has no TYPE wire name")
        existing = self._models.get(name)
        if existing is not None and existing is not model:
            raise RegistryError(f"event type {name!r} is already registered by {existing.__name__}")
        self._models[name] = model
        self._fast = self._fast_list = None
        self._current = {}
        return model

    def upcaster(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator registering the step ``from_version -> from_version + 1``."""

        def decorate(step: Upcaster) -> Upcaster:
            key = (type_name, from_version)
            if key in self._upcasters:
                raise RegistryError(f"upcaster for {type_name!r} v{from_version} already registered")
            self._upcasters[key] = step
            self._fast = self._fast_list = None
            self._current = {}
            return step

        return decorate

    def load_plugins(self) -> list[str]:
        """Register models published by installed packages under the entry-point group
        ``touchpoints.event_types`` (each entry point names a model or an iterable of them)."""
        loaded: list[str] = []
        for entry_point in metadata.entry_points(group=PLUGIN_ENTRY_POINT_GROUP):
            target = entry_point.load()
            models = target if isinstance(target, Iterable) else [target]
            for model in models:
                self.register(model)
                loaded.append(model.TYPE)
        return loaded

    # --- lookup ---------------------------------------------------------------

    def model(self, type_name: str) -> type[Event]:
        try:
            return self._models[type_name]
        except KeyError:
            raise InvalidEvent([FieldError("type", f"unknown event type {type_name!r}")]) from None

    def names(self) -> list[str]:
        return sorted(self._models)

    def current_version(self, type_name: str) -> int:
        return self.model(type_name).SCHEMA_VERSION

    def sendable_to_process(self) -> bool:
        """Whether another Python process can rebuild this registry from its pickle: every
        model and upcaster must be importable by name (not defined in ``__main__`` or
        inside a function). Decoder processes need that."""
        try:
            payload = pickle.dumps(self)
        except Exception:
            return False
        return b"__main__" not in payload

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """The JSON Schema of every registered type, keyed by wire name."""
        schemas = {}
        for name in self.names():
            model = self._models[name]
            schema = model.model_json_schema()
            schema["x-schema-version"] = model.SCHEMA_VERSION
            schemas[name] = schema
        return schemas

    # --- decoding -------------------------------------------------------------

    def fast_validator(self) -> SchemaValidator | None:
        """One pydantic validator for every registered type, discriminated on ``type``: a
        current-version event is then parsed and validated in a single call into
        pydantic-core, with no dict built in Python (about twice as fast on the ingest
        path). Valid input gives the same event as the general path; anything it refuses
        goes through the general path, which upcasts older versions and names every
        error. None when a model's ``type`` field is not ``Literal[TYPE]`` (a plugin may
        declare it as ``str``): no union can discriminate on it then.

        It leaves out the envelope's two Python validators (a call back from Rust costs
        ~0.9 us each, a quarter of the validation); ``_envelope_holds`` makes the same two
        checks after it, and whatever fails them takes the general path."""
        if self._fast is None:
            union = self._event_union()
            self._fast = False if union is None else _without_envelope_checks(TypeAdapter(union))
        return self._fast or None

    def _event_union(self) -> Any:
        """Every registered model, discriminated on ``type`` (None: not every ``type`` is a Literal)."""
        models = list(self._models.values())
        if not models or not all(_type_is_literal(model) for model in models):
            return None
        if len(models) == 1:
            return models[0]
        return Annotated[Union[tuple(models)], Field(discriminator="type")]

    def fast_decode_array(self, raw: bytes) -> list[Event] | None:
        """The events of a JSON array of current-version events, parsed and validated in one
        call into pydantic-core (no list of dicts built in Python). None when the fast path
        cannot take it (malformed, empty, any invalid or older item, no fast validator):
        then decode item by item, which names every error."""
        if self._fast_list is None:
            union = self._event_union()
            self._fast_list = False if union is None else _without_envelope_checks(TypeAdapter(list[union]))  # type: ignore[valid-type]
        if not self._fast_list:
            return None
        try:
            events = self._fast_list.validate_json(raw)
        except ValidationError:
            return None
        if not events or not all(map(_envelope_holds, events)):
            return None
        return events

    def fast_decode_lines(self, lines: Iterable[bytes]) -> list[Event] | None:
        """The events of JSON documents that are all valid current-version events, through
        the fast validator; None as ``fast_decode_array``."""
        fast = self.fast_validator()
        if fast is None:
            return None
        try:
            events = [fast.validate_json(line) for line in lines]
        except ValidationError:
            return None
        if not events or not all(map(_envelope_holds, events)):
            return None
        return events

    def upcast(self, type_name: str, version: int, body: dict[str, Any]) -> dict[str, Any]:
        target = self.current_version(type_name)
        if version > target:
            raise InvalidEvent(
                [FieldError("schema_version", f"{version} is newer than the known {target} for {type_name!r}")]
            )
        while version < target:
            step = self._upcasters.get((type_name, version))
            if step is None:
                raise InvalidEvent(
                    [FieldError("schema_version", f"no upcaster for {type_name!r} from version {version}")]
                )
            try:
                body = step(body)
            except InvalidEvent:
                raise
            except Exception as error:  # an old body too malformed to upcast is bad input, not a crash
                raise InvalidEvent(
                    [FieldError("schema_version", f"cannot upcast {type_name!r} from version {version}: {error}")]
                ) from None
            version += 1
        return body

    def validate(self, body: Any) -> Event:
        """Validate one wire-format object (a dict, as parsed from JSON).

        An optional ``schema_version`` key says which version the emitter wrote;
        older bodies are upcast to the current model before validation.
        """
        fast = self.fast_validator()
        if fast is not None and type(body) is dict and "schema_version" not in body:
            try:
                event = fast.validate_python(body)
            except ValidationError:
                pass  # the path below names the errors exactly as it always has
            else:
                if _envelope_holds(event):
                    return event
        if not isinstance(body, Mapping):
            raise InvalidEvent([FieldError("", f"expected a JSON object, got {_json_kind(body)}")])
        type_name = body.get("type")
        if not isinstance(type_name, str):
            raise InvalidEvent([FieldError("type", "required: a registered event type name")])
        model = self.model(type_name)
        version = body.get("schema_version", model.SCHEMA_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InvalidEvent([FieldError("schema_version", "must be a positive integer")])
        body = {k: v for k, v in body.items() if k != "schema_version"}
        if version != model.SCHEMA_VERSION:
            body = self.upcast(type_name, version, body)
        try:
            return model.model_validate(body)
        except ValidationError as error:
            raise InvalidEvent(field_errors(error)) from None

    def decode_json(self, raw: bytes | str) -> Event:
        """Decode one wire-format JSON document."""
        fast = self.fast_validator()
        if fast is not None:
            try:
                event = fast.validate_json(raw)
            except ValidationError:
                pass  # malformed, invalid, an older schema_version...: the general path says which
            else:
                if _envelope_holds(event):
                    return event
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise InvalidEvent([FieldError("", f"malformed JSON: {error}")]) from None
        return self.validate(body)

    def decode_stored(self, type_name: str, schema_version: int, data: bytes) -> Event:
        """Decode an event as stored (its canonical body, without ``type``)."""
        model = self.model(type_name)
        if schema_version == model.SCHEMA_VERSION:
            return model.model_validate_json(data)
        body = orjson.loads(data)
        body["type"] = type_name
        return model.model_validate(self.upcast(type_name, schema_version, body))

    def decode_logged(
        self, type_name: str, schema_version: int, data: bytes, position: int, recorded_at: datetime, stream: str
    ) -> "LoggedEvent":
        """THE decoder of an event as the log holds it, wherever it was read (a store's
        envelope, a raw row, a published record): its body as ``decode_stored`` decodes it,
        plus where and when the log holds it. Full scans call it per event, so a current
        version goes straight to its model's JSON validator (cached per type)."""
        current = self._current.get(type_name)
        if current is not None and current[1] == schema_version:
            event = current[0](data)
        else:
            model = self.model(type_name)
            self._current[type_name] = (model.model_validate_json, model.SCHEMA_VERSION)
            event = self.decode_stored(type_name, schema_version, data)
        return LoggedEvent(position, recorded_at, stream, event)

    def stored_wire(self, type_name: str, schema_version: int, data: bytes) -> bytes:
        """``encode_wire`` of an event as stored, for reading the log out. A current-version
        body is ``encode_body``'s canonical form, the wire fields but ``type`` in model order,
        so ``type`` goes back in after ``event_id`` without validating the body again: it was
        validated when appended, and ``touchpoints verify`` proves it unchanged. Older versions
        are upcast and validated; a body that is not JSON raises ``InvalidEvent``."""
        model = self.model(type_name)
        if schema_version == model.SCHEMA_VERSION and _type_follows_event_id(model):
            try:
                body = orjson.loads(data)  # a damaged row is named by the general path, not passed on
            except orjson.JSONDecodeError:
                body = None
            if _opens_with_plain_event_id(body, data):
                cut = _AFTER_EVENT_ID
                return data[:cut] + b'"type":' + orjson.dumps(type_name) + b"," + data[cut:]
        try:
            return encode_wire(self.decode_stored(type_name, schema_version, data))
        except (ValidationError, orjson.JSONDecodeError) as error:
            raise InvalidEvent([FieldError("data", f"stored body does not decode: {error}")]) from None


def encode_body(event: Event) -> bytes:
    """The canonical stored bytes of an event: its fields but ``type`` (kept in the
    envelope), ``None`` fields left out, keys in model order. Stable for a given
    model version, so hashes over it are reproducible."""
    return event.__pydantic_serializer__.to_json(event, exclude=_ENVELOPE_TYPE, exclude_none=True)


_ENVELOPE_TYPE = {"type"}


def encode_wire(event: Event) -> bytes:
    """The wire format of an event (what emitters send), with ``type``."""
    return event.model_dump_json(exclude_none=True).encode()


_EVENT_ID_KEY = b'{"event_id":"'
_AFTER_EVENT_ID = len(_EVENT_ID_KEY) + 36 + 2  # {"event_id":"<36 characters>",


def _opens_with_plain_event_id(body: Any, data: bytes) -> bool:
    """Whether ``data`` (``body`` parsed) opens with ``event_id`` as 36 unescaped characters
    followed by another member: then ``type`` goes in right after it and the JSON stays JSON."""
    if type(body) is not dict or not body:
        return False
    first, value = next(iter(body.items()))
    return (
        first == "event_id" and type(value) is str and len(value) == 36
        and data[:_AFTER_EVENT_ID] == _EVENT_ID_KEY + value.encode() + b'",'
    )


@cache
def _type_follows_event_id(model: type[Event]) -> bool:
    """Whether ``model`` serializes ``event_id`` then ``type`` first (every ``Event`` does,
    unless a subclass redeclares the envelope)."""
    return list(model.model_fields)[:2] == ["event_id", "type"]


def field_errors(error: ValidationError) -> list[FieldError]:
    errors = []
    for item in error.errors(include_url=False):
        parts = [str(part) for part in item["loc"]]
        named = (item.get("ctx") or {}).get("field_path")  # set by events.models.field_error
        if named:
            parts.append(named)
        errors.append(FieldError(".".join(parts), item["msg"]))
    return errors


def _envelope_holds(event: Event) -> bool:
    """``Event._identity_present`` and ``Event._to_utc`` for an event validated without them:
    an identity is present, and ``occurred_at`` is already UTC (its tzinfo may then be
    pydantic's UTC rather than ``timezone.utc``: equal, same hash, same serialization)."""
    return (event.customer_id is not None or event.anonymous_id is not None) and not event.occurred_at.utcoffset()


_ENVELOPE_CHECKS = frozenset({Event._identity_present, Event._to_utc.__func__})  # type: ignore[attr-defined]


def _without_envelope_checks(adapter: TypeAdapter) -> SchemaValidator:
    """The adapter's validator with the ``_ENVELOPE_CHECKS`` steps taken out of its core
    schema (every other validator, a plugin's included, stays)."""

    def strip(node: Any) -> Any:
        if isinstance(node, list):
            return [strip(item) for item in node]
        if not isinstance(node, dict):
            return node
        if node.get("type") == "function-after":
            function = node["function"]["function"]
            if getattr(function, "__func__", function) in _ENVELOPE_CHECKS:
                return strip(node["schema"])
        return {key: value if key in ("function", "cls") else strip(value) for key, value in node.items()}

    return SchemaValidator(strip(adapter.core_schema))


def _type_is_literal(model: type[Event]) -> bool:
    annotation = model.model_fields["type"].annotation
    return get_origin(annotation) is Literal and get_args(annotation) == (model.TYPE,)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return type(value).__name__


def _upcast_order_placed_v1(body: dict[str, Any]) -> dict[str, Any]:
    """v1 orders carried ``data.total_cents`` (integer); v2 carries ``data.revenue``
    as a decimal amount in the order's currency."""
    data = dict(body.get("data") or {})
    if "total_cents" in data:
        cents = data.pop("total_cents")
        if isinstance(cents, int) and not isinstance(cents, bool):
            data["revenue"] = f"{cents // 100}.{cents % 100:02d}" if cents >= 0 else str(cents / 100)
        else:
            data["revenue"] = cents  # let validation name the bad value
    return {**body, "data": data}


def default_registry() -> EventRegistry:
    """A registry with the core touchpoint types, the tracking API's and their upcasters."""
    registry = EventRegistry()
    for model in (*CORE_EVENT_TYPES, *TRACKING_EVENT_TYPES, *PRIVACY_EVENT_TYPES):
        registry.register(model)
    registry.upcaster("order_placed", 1)(_upcast_order_placed_v1)
    return registry


REGISTRY = default_registry()


def decode_recorded(recorded: "RecordedEvent", registry: EventRegistry = REGISTRY) -> "LoggedEvent":
    """Decode a stored envelope into the event plus where and when the log holds it."""
    return registry.decode_logged(recorded.type, recorded.schema_version, recorded.data, recorded.position,
                                  recorded.recorded_at, recorded.stream)


from events.logged import LoggedEvent  # noqa: E402
from events.store import RecordedEvent  # noqa: E402
