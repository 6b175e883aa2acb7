"""Segment-spec messages (what Segment's and RudderStack's SDKs send) to our wire events.

A pure mapping: no clock (the receive time is a parameter), no I/O. The HTTP routes
(``consumers.api.tracking_routes``) feed what it returns to the one ingest path, so every
event it makes is validated by the registry like any other.

| Segment message | our event |
|---|---|
| ``track`` "Order Completed" | ``order_placed``: ``order_id``; ``revenue``, else ``total``; ``currency`` |
| ``track`` "Order Refunded" | ``order_refunded``: ``order_id``; ``total``, else ``revenue``, else ``amount``; ``currency`` |
| ``track`` a name in ``TrackingConfig.track_types`` | that touch type (with its fixed channel, if configured) |
| ``track`` any other name | ``event_tracked``: ``data.name`` = the name, ``data.properties`` |
| ``page``, ``screen`` | ``page_viewed``: url, referrer, title (a screen's name) |
| ``identify`` with ``userId`` and ``anonymousId`` | ``identity_linked`` |
| ``identify`` with one id only | nothing stored (traits are not kept) |
| ``alias`` whose ``previousId`` is the message's ``anonymousId`` | ``identity_linked`` (``userId`` ← ``previousId``) |
| ``alias`` with another ``previousId`` (a former user id) | ``customers_merged`` (``previousId`` into ``userId``) |
| ``group`` | ``group_associated``: ``group_id``, ``traits`` |

Every message: ``userId`` → ``customer_id``, ``anonymousId`` → ``anonymous_id``;
``messageId`` → ``event_id`` (itself when it is a UUID, else the UUID5 of it, so an SDK's
retry is a duplicate, never a second event; a message without one gets the UUID5 of its
canonical JSON); ``occurred_at`` = ``timestamp``, else ``received_at − (sentAt −
originalTimestamp)`` (Segment's clock-skew correction), else ``received_at``. Touches get
``channel``, ``source`` and ``campaign`` from ``events.channels`` (``context.campaign``,
the click ids of ``context.page.url``, ``context.page.referrer``).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from application.settings import SettingsError
from events.channels import CLICK_IDS, ORGANIC_CLICK_IDS, classify, landing_parameters

# UUID5 namespace of Segment messageIds (uuid5(NAMESPACE_URL, "touchpoints:segment:messageId")).
MESSAGE_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "touchpoints:segment:messageId")
_NAMESPACE_BYTES = MESSAGE_ID_NAMESPACE.bytes
MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
ORDER_COMPLETED = "Order Completed"
ORDER_REFUNDED = "Order Refunded"
# Segment's email spec names, and what they are here (the channel is fixed: an email's).
DEFAULT_TRACK_TYPES: Mapping[str, tuple[str, str | None]] = {
    "Email Opened": ("email_opened", "email"),
    "Email Link Clicked": ("email_clicked", "email"),
}
TRACK_TYPES_VARIABLE = "TOUCHPOINTS_TRACK_TYPES"
INTERNAL_HOSTS_VARIABLE = "TOUCHPOINTS_INTERNAL_HOSTS"
_CLICK_ID_NAMES = frozenset({*CLICK_IDS, *ORGANIC_CLICK_IDS})
SHORT_TEXT = 256
LONG_TEXT = 2048
TITLE_TEXT = 512


@dataclass(frozen=True)
class TrackingConfig:
    """``track_types``: a track event name → (our touch type, a fixed channel or None to
    derive it); ``internal_hosts``: referrer hosts that are our own (no referrer)."""

    track_types: Mapping[str, tuple[str, str | None]] = field(default_factory=lambda: dict(DEFAULT_TRACK_TYPES))
    internal_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "TrackingConfig":
        """``TOUCHPOINTS_TRACK_TYPES``: ``Event Name=type[/channel]`` pairs separated by ``;``
        (added to and overriding the defaults); ``TOUCHPOINTS_INTERNAL_HOSTS``: hosts separated
        by commas."""
        types = dict(DEFAULT_TRACK_TYPES)
        for pair in environ.get(TRACK_TYPES_VARIABLE, "").split(";"):
            if not pair.strip():
                continue
            name, equals, target = pair.partition("=")
            type_name, _, channel = target.strip().partition("/")
            if not equals or not name.strip() or not type_name:
                raise SettingsError(TRACK_TYPES_VARIABLE, f"{pair.strip()!r} is not 'Event Name=type[/channel]'")
            types[name.strip()] = (type_name, channel or None)
        hosts = frozenset(h.strip().lower() for h in environ.get(INTERNAL_HOSTS_VARIABLE, "").split(",") if h.strip())
        return cls(types, hosts)


class MessageError(ValueError):
    """A message that cannot become an event: ``field`` (Segment's name) and why."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def to_event(
    message: Any, *, received_at: datetime, config: TrackingConfig, default_type: str | None = None
) -> dict[str, Any] | None:
    """The wire event of one Segment message (None: nothing to store, an ``identify`` with
    one id); ``default_type`` is the route's (``/v1/track``) when the message names none."""
    if not isinstance(message, Mapping):
        raise MessageError("(message)", "must be a JSON object")
    kind = message.get("type") or default_type
    if kind not in MESSAGE_TYPES:
        raise MessageError("type", f"must be one of {', '.join(MESSAGE_TYPES)}")
    user_id = _identity(message, "userId")
    anonymous_id = _identity(message, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise MessageError("userId", "userId or anonymousId is required")
    envelope = {
        "event_id": event_id(message),
        "occurred_at": occurred_at(message, received_at).isoformat(),
        "customer_id": user_id,
        "anonymous_id": anonymous_id,
    }
    body = _BUILDERS[kind](message, envelope, config)
    return None if body is None else {key: value for key, value in body.items() if value is not None}


def event_id(message: Mapping[str, Any]) -> str:
    message_id = message.get("messageId")
    if message_id is None or message_id == "":
        canonical = orjson.dumps({k: v for k, v in message.items() if k != "sentAt"}, option=orjson.OPT_SORT_KEYS)
        return _uuid5_text(canonical.decode())
    text = str(message_id)
    if len(text) in (32, 36, 38, 45):  # the lengths uuid.UUID reads; any other text is not one
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
    return _uuid5_text(text)


def _uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(MESSAGE_ID_NAMESPACE, name))`` without the two UUID objects (per message)."""
    h = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def occurred_at(message: Mapping[str, Any], received_at: datetime) -> datetime:
    timestamp = _time(message, "timestamp")
    if timestamp is not None:
        return timestamp
    sent, original = _time(message, "sentAt"), _time(message, "originalTimestamp")
    if sent is not None and original is not None:
        return received_at - (sent - original)
    return received_at


# --- one builder per message type -------------------------------------------------------


def _track(message: Mapping[str, Any], envelope: dict[str, Any], config: TrackingConfig) -> dict[str, Any]:
    name = message.get("event")
    if not isinstance(name, str) or not name.strip():
        raise MessageError("event", "a track message needs the event name")
    properties = _object(message, "properties")
    if name == ORDER_COMPLETED:
        revenue = _first(properties, "revenue", "total")
        return {**envelope, "type": "order_placed", "data": {
            "order_id": _text_id(properties, "order_id"), "revenue": _money(revenue, "properties.revenue"),
            "currency": _currency(properties)}}
    if name == ORDER_REFUNDED:
        amount = _first(properties, "total", "revenue", "amount")
        return {**envelope, "type": "order_refunded", "data": {
            "order_id": _text_id(properties, "order_id"), "amount": _money(amount, "properties.total"),
            "currency": _currency(properties, required=False)}}
    mapped = config.track_types.get(name)
    if mapped is not None:
        type_name, channel = mapped
        return {**envelope, **_attribution(message, config, channel), "type": type_name}
    return {**envelope, **_attribution(message, config, None), "type": "event_tracked",
            "data": {"name": name[:SHORT_TEXT], "properties": properties}}


def _page(message: Mapping[str, Any], envelope: dict[str, Any], config: TrackingConfig) -> dict[str, Any]:
    properties = _object(message, "properties")
    page = _object(_object(message, "context"), "page")
    url = _text(properties.get("url")) or _text(page.get("url"))
    referrer = _text(properties.get("referrer")) or _text(page.get("referrer"))
    title = _text(properties.get("title")) or _text(page.get("title")) or _text(message.get("name"))
    data = {"url": _cut(url, LONG_TEXT), "referrer": _cut(referrer, LONG_TEXT), "title": _cut(title, TITLE_TEXT)}
    return {**envelope, **_attribution(message, config, None, url=url, referrer=referrer), "type": "page_viewed",
            "data": {key: value for key, value in data.items() if value}}


def _identify(message: Mapping[str, Any], envelope: dict[str, Any], config: TrackingConfig) -> dict[str, Any] | None:
    if envelope["customer_id"] is None or envelope["anonymous_id"] is None:
        return None
    return {**envelope, "type": "identity_linked"}


def _alias(message: Mapping[str, Any], envelope: dict[str, Any], config: TrackingConfig) -> dict[str, Any]:
    user_id = envelope["customer_id"]
    previous_id = _identity(message, "previousId")
    if user_id is None:
        raise MessageError("userId", "an alias message needs userId")
    if previous_id is None:
        raise MessageError("previousId", "an alias message needs previousId")
    if previous_id == envelope["anonymous_id"]:
        return {**envelope, "type": "identity_linked"}
    return {**envelope, "anonymous_id": None, "type": "customers_merged",
            "data": {"duplicate_customer_id": previous_id}}


def _group(message: Mapping[str, Any], envelope: dict[str, Any], config: TrackingConfig) -> dict[str, Any]:
    group_id = _identity(message, "groupId")
    if group_id is None:
        raise MessageError("groupId", "a group message needs groupId")
    traits = _object(message, "traits")
    return {**envelope, "type": "group_associated", "data": {"group_id": group_id, "traits": traits}}


_BUILDERS = {"track": _track, "page": _page, "screen": _page, "identify": _identify, "alias": _alias, "group": _group}


# --- parts --------------------------------------------------------------------------------


def _attribution(
    message: Mapping[str, Any], config: TrackingConfig, channel: str | None, *,
    url: str | None = None, referrer: str | None = None,
) -> dict[str, Any]:
    """``channel``, ``source``, ``campaign`` of a touch: from the channel rules, or the fixed
    channel; ``url`` and ``referrer`` default to ``context.page``'s."""
    context = _object(message, "context")
    campaign = _object(context, "campaign")
    page = _object(context, "page")
    url = url or _text(page.get("url"))
    referrer = referrer or _text(page.get("referrer"))
    query = landing_parameters(url)
    if not query and _text(page.get("search")):
        query = landing_parameters("?" + str(page["search"]).lstrip("?"))
    found = classify(
        utm_source=_text(campaign.get("source")) or query.get("utm_source"),
        utm_medium=_text(campaign.get("medium")) or query.get("utm_medium"),
        utm_campaign=_text(campaign.get("name")) or query.get("utm_campaign"),
        click_ids=[name for name in query if name in _CLICK_ID_NAMES],
        referrer=referrer,
        page_url=url,
        internal_hosts=config.internal_hosts,
    )
    return {"channel": channel or found.channel, "source": _cut(found.source, SHORT_TEXT),
            "campaign": _cut(found.campaign, SHORT_TEXT)}


def _object(container: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = container.get(name)
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _cut(text: str | None, limit: int) -> str | None:
    return text[:limit] if text else None


def _identity(message: Mapping[str, Any], name: str) -> str | None:
    value = message.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MessageError(name, "must be a string or a number")
    text = str(value)
    if len(text) > SHORT_TEXT:
        raise MessageError(name, f"longer than {SHORT_TEXT} characters")
    return text


def _first(properties: Mapping[str, Any], *names: str) -> Any:
    return next((properties[name] for name in names if properties.get(name) is not None), None)


def _text_id(properties: Mapping[str, Any], name: str) -> str:
    value = _text(properties.get(name))
    if value is None:
        raise MessageError(f"properties.{name}", "required")
    return value


def _money(value: Any, name: str) -> str:
    if value is None:
        raise MessageError(name, "required")
    if isinstance(value, bool):
        raise MessageError(name, "must be a number")
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        raise MessageError(name, "must be a number") from None
    if not amount.is_finite():
        raise MessageError(name, "must be a finite number")
    return str(amount)


def _currency(properties: Mapping[str, Any], *, required: bool = True) -> str | None:
    value = _text(properties.get("currency"))
    if value is None:
        if required:
            raise MessageError("properties.currency", "required (ISO 4217, e.g. USD)")
        return None
    return value.upper()


def _time(message: Mapping[str, Any], name: str) -> datetime | None:
    value = message.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MessageError(name, "must be an ISO 8601 date-time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MessageError(name, "must be an ISO 8601 date-time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
