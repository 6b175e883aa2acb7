"""Touchpoint event schemas: frozen pydantic models, one per wire type.

Every event shares the envelope below; ``data`` is the type-specific payload.
A model's wire name (``TYPE``) and ``SCHEMA_VERSION`` are class attributes read
by the registry; the module path is never part of the wire format.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

Kind = Literal["touch", "order", "refund", "identity", "consent", "erasure"]

IdentityId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
ChannelName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.\-]*$")
]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)]
SealedToken = Annotated[str, StringConstraints(pattern=r"^pii1\.[A-Za-z0-9_\-]{22}$")]
SealedValue = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[A-Za-z0-9_\-]+$")]


TIME_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]"  # a calendar date and a time follow: never epoch digits
TIME_TEXT_REASON = "must be an RFC 3339 date-time with an offset, e.g. 2024-05-02T09:30:00Z (not epoch seconds)"


class RFC3339Text:
    """Annotation of an aware datetime sent as text: ``YYYY-MM-DDTHH:MM:SS`` plus an offset.
    Pydantic alone also reads a number, or a string of digits (``"1712000000"``), as epoch
    seconds; an emitter that means milliseconds or a counter then stores a wrong time
    without a word. The check runs inside pydantic-core (no call back into Python, so the
    ingest hot path keeps its speed); datetime objects pass, for code that builds events."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        moment = handler(source)
        text = core_schema.str_schema(pattern=TIME_TEXT, strict=True)
        json_input = _refused_as(text)
        python_input = _refused_as(core_schema.union_schema([text, core_schema.is_instance_schema(datetime)]))
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema([json_input, moment]),
            python_schema=core_schema.chain_schema([python_input, moment]),
            serialization=moment.get("serialization"),
        )

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}


def _refused_as(schema: CoreSchema) -> CoreSchema:
    return core_schema.custom_error_schema(
        schema, custom_error_type="datetime_text", custom_error_message=TIME_TEXT_REASON
    )


OccurredAt = Annotated[AwareDatetime, RFC3339Text()]


def field_error(field: str, reason: str) -> PydanticCustomError:
    """A model-level validation error naming the (dotted) field it is about, so the
    registry reports that field instead of the whole event."""
    return PydanticCustomError("invalid_field", reason, {"field_path": field})


class Payload(BaseModel):
    """Base of every ``data`` payload: frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class NoData(Payload):
    pass


class Event(BaseModel):
    """The envelope shared by every touchpoint event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1
    KIND: ClassVar[Kind] = "touch"

    event_id: UUID
    type: str
    occurred_at: OccurredAt
    customer_id: IdentityId | None = None
    anonymous_id: IdentityId | None = None
    channel: ChannelName | None = None
    campaign: ShortText | None = None
    source: ShortText | None = None
    data: NoData = NoData()
    # Set by ingestion where personal fields are sealed (``events.personal``): the token of
    # each personal value but identities (a handle, a ticket's text) -> that value encrypted
    # with its person's key (``application.privacy``; identities' values stay with their keys).
    sealed: dict[SealedToken, SealedValue] | None = Field(default=None, max_length=16)

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(timezone.utc)
        except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC: bad input, not a crash
            raise PydanticCustomError("datetime_range", "is outside years 1-9999 once converted to UTC") from None

    @model_validator(mode="after")
    def _identity_present(self) -> "Event":
        if self.customer_id is None and self.anonymous_id is None:
            raise field_error("customer_id", "customer_id or anonymous_id is required")
        return self

    @property
    def kind(self) -> Kind:
        return self.KIND

    @property
    def stream(self) -> str:
        """The identity stream this event is stored in: the customer's when known."""
        if self.customer_id is not None:
            return customer_stream(self.customer_id)
        return anonymous_stream(self.anonymous_id)  # type: ignore[arg-type]


def customer_stream(customer_id: str) -> str:
    return f"customer-{customer_id}"


def anonymous_stream(anonymous_id: str) -> str:
    return f"anonymous-{anonymous_id}"


class Touch(Event):
    """Any contact with a person that marketing can attribute: channel is required."""

    KIND: ClassVar[Kind] = "touch"
    channel: ChannelName


# --- touches -----------------------------------------------------------------


class SocialData(Payload):
    platform: ShortText | None = None
    handle: ShortText | None = None
    action: ShortText | None = None
    post_id: ShortText | None = None


class SocialFollowed(Touch):
    TYPE: ClassVar[str] = "social_followed"
    type: Literal["social_followed"] = "social_followed"
    data: SocialData = SocialData()


class SocialEngaged(Touch):
    TYPE: ClassVar[str] = "social_engaged"
    type: Literal["social_engaged"] = "social_engaged"
    data: SocialData = SocialData()


class AdData(Payload):
    ad_id: ShortText | None = None
    ad_group: ShortText | None = None
    cost: Money | None = None
    currency: CurrencyCode | None = None
    url: Annotated[str, StringConstraints(max_length=2048)] | None = None


class AdClicked(Touch):
    TYPE: ClassVar[str] = "ad_clicked"
    type: Literal["ad_clicked"] = "ad_clicked"
    data: AdData = AdData()


class PageData(Payload):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None
    referrer: Annotated[str, StringConstraints(max_length=2048)] | None = None
    title: Annotated[str, StringConstraints(max_length=512)] | None = None


class PageViewed(Touch):
    TYPE: ClassVar[str] = "page_viewed"
    type: Literal["page_viewed"] = "page_viewed"
    data: PageData = PageData()


class EmailData(Payload):
    message_id: ShortText | None = None
    subject: Annotated[str, StringConstraints(max_length=512)] | None = None
    url: Annotated[str, StringConstraints(max_length=2048)] | None = None


class EmailOpened(Touch):
    TYPE: ClassVar[str] = "email_opened"
    type: Literal["email_opened"] = "email_opened"
    data: EmailData = EmailData()


class EmailClicked(Touch):
    TYPE: ClassVar[str] = "email_clicked"
    type: Literal["email_clicked"] = "email_clicked"
    data: EmailData = EmailData()


class NewsletterData(Payload):
    list_id: ShortText | None = None


class NewsletterSubscribed(Touch):
    TYPE: ClassVar[str] = "newsletter_subscribed"
    type: Literal["newsletter_subscribed"] = "newsletter_subscribed"
    data: NewsletterData = NewsletterData()


class StoreData(Payload):
    store_id: ShortText | None = None
    duration_minutes: Annotated[int, Field(ge=0, le=24 * 60)] | None = None


class StoreVisited(Touch):
    TYPE: ClassVar[str] = "store_visited"
    type: Literal["store_visited"] = "store_visited"
    data: StoreData = StoreData()


class SupportData(Payload):
    ticket_id: ShortText | None = None
    reason: Annotated[str, StringConstraints(max_length=512)] | None = None
    duration_seconds: Annotated[int, Field(ge=0)] | None = None


class SupportCalled(Touch):
    TYPE: ClassVar[str] = "support_called"
    type: Literal["support_called"] = "support_called"
    data: SupportData = SupportData()


class SupportTicketOpened(Touch):
    TYPE: ClassVar[str] = "support_ticket_opened"
    type: Literal["support_ticket_opened"] = "support_ticket_opened"
    data: SupportData = SupportData()


# --- orders, identity, consent ------------------------------------------------


class OrderData(Payload):
    order_id: ShortText
    revenue: Money
    currency: CurrencyCode


class OrderPlaced(Event):
    TYPE: ClassVar[str] = "order_placed"
    SCHEMA_VERSION: ClassVar[int] = 2
    KIND: ClassVar[Kind] = "order"
    type: Literal["order_placed"] = "order_placed"
    data: OrderData


class RefundData(Payload):
    order_id: ShortText
    amount: Money
    currency: CurrencyCode | None = None


class OrderRefunded(Event):
    TYPE: ClassVar[str] = "order_refunded"
    KIND: ClassVar[Kind] = "refund"
    type: Literal["order_refunded"] = "order_refunded"
    data: RefundData


class IdentityLinked(Event):
    """Attaches ``anonymous_id`` (a handle, cookie, email hash...) to ``customer_id``."""

    TYPE: ClassVar[str] = "identity_linked"
    KIND: ClassVar[Kind] = "identity"
    type: Literal["identity_linked"] = "identity_linked"
    customer_id: IdentityId
    anonymous_id: IdentityId


class MergeData(Payload):
    duplicate_customer_id: IdentityId


class CustomersMerged(Event):
    """``data.duplicate_customer_id`` is merged into ``customer_id``, which survives."""

    TYPE: ClassVar[str] = "customers_merged"
    KIND: ClassVar[Kind] = "identity"
    type: Literal["customers_merged"] = "customers_merged"
    customer_id: IdentityId
    data: MergeData

    @model_validator(mode="after")
    def _not_self(self) -> "CustomersMerged":
        if self.data.duplicate_customer_id == self.customer_id:
            raise field_error("data.duplicate_customer_id", "must differ from customer_id (merged into itself)")
        return self


class TrackedData(Payload):
    name: ShortText
    properties: dict[str, Any] = Field(default_factory=dict)


class EventTracked(Touch):
    """A touch named by the emitter (a tracking SDK's ``track``) that maps to no other type:
    kept, under its own ``name``, rather than dropped."""

    TYPE: ClassVar[str] = "event_tracked"
    type: Literal["event_tracked"] = "event_tracked"
    data: TrackedData


class GroupData(Payload):
    group_id: IdentityId
    traits: dict[str, Any] = Field(default_factory=dict)


class GroupAssociated(Event):
    """The identity belongs to a group (an account, a company): a tracking SDK's ``group``.
    Stored for the record; the identity graph does not fold it."""

    TYPE: ClassVar[str] = "group_associated"
    KIND: ClassVar[Kind] = "identity"
    type: Literal["group_associated"] = "group_associated"
    data: GroupData


class ConsentData(Payload):
    purpose: ShortText
    granted: bool


class ConsentChanged(Event):
    TYPE: ClassVar[str] = "consent_changed"
    KIND: ClassVar[Kind] = "consent"
    type: Literal["consent_changed"] = "consent_changed"
    data: ConsentData


class ErasureData(Payload):
    identities: Annotated[list[IdentityId], Field(min_length=1, max_length=10_000)]
    keys_destroyed: Annotated[int, Field(ge=0)]


class CustomerErased(Event):
    """A person's keys were destroyed (``touchpoints erase``): their sealed fields are
    unreadable from now on. Names only stored forms (pseudonyms), never a plaintext value.
    ``occurred_at`` is the person's last event's, so the views' "now" does not move;
    ``recorded_at`` says when the erasure happened."""

    TYPE: ClassVar[str] = "customer_erased"
    KIND: ClassVar[Kind] = "erasure"
    type: Literal["customer_erased"] = "customer_erased"
    data: ErasureData


CORE_EVENT_TYPES: tuple[type[Event], ...] = (
    SocialFollowed,
    SocialEngaged,
    AdClicked,
    PageViewed,
    EmailOpened,
    EmailClicked,
    NewsletterSubscribed,
    StoreVisited,
    SupportCalled,
    SupportTicketOpened,
    OrderPlaced,
    OrderRefunded,
    IdentityLinked,
    CustomersMerged,
    ConsentChanged,
)
# Written by the tracking API (Segment spec, ``application.tracking``) beside the core types.
TRACKING_EVENT_TYPES: tuple[type[Event], ...] = (EventTracked, GroupAssociated)
# Written by the platform itself when a person is erased (``application.privacy.erasure``).
PRIVACY_EVENT_TYPES: tuple[type[Event], ...] = (CustomerErased,)


def json_default(value: Any) -> Any:
    """orjson ``default`` for the few types it does not encode natively."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
