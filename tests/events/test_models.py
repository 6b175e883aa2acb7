"""The wire format: every core type accepts a good event and names what is wrong with a bad one."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from events.models import CORE_EVENT_TYPES, Touch
from events.registry import REGISTRY, InvalidEvent

GOOD_DATA = {
    "order_placed": {"order_id": "o-1", "revenue": "120.50", "currency": "EUR"},
    "order_refunded": {"order_id": "o-1", "amount": "20.00", "currency": "EUR"},
    "customers_merged": {"duplicate_customer_id": "anna-old"},
    "consent_changed": {"purpose": "marketing_email", "granted": True},
    "ad_clicked": {"ad_id": "ad-7", "cost": "0.42", "currency": "USD"},
}


def good(type_: str, **changes) -> dict:
    """A valid wire event of ``type_``; ``changes`` replace or (with None) remove keys."""
    body = {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "occurred_at": "2024-03-01T10:00:00+01:00",
        "customer_id": "anna",
    }
    if REGISTRY.model(type_).KIND == "touch":
        body["channel"] = "instagram"
    if type_ == "identity_linked":
        body["anonymous_id"] = "instagram:@anna"
    if type_ in GOOD_DATA:
        body["data"] = GOOD_DATA[type_]
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def refused_fields(body) -> list[str]:
    with pytest.raises(InvalidEvent) as refused:
        REGISTRY.validate(body)
    return [error.field for error in refused.value.errors]


@pytest.mark.parametrize("model", CORE_EVENT_TYPES, ids=lambda m: m.TYPE)
def test_every_core_type__validates_a_good_example(model):
    event = REGISTRY.validate(good(model.TYPE))

    assert isinstance(event, model)
    assert event.occurred_at == datetime(2024, 3, 1, 9, tzinfo=timezone.utc)
    assert event.occurred_at.tzinfo == timezone.utc


def test_the_issue_types__are_all_registered():
    required = {
        "social_followed", "social_engaged", "ad_clicked", "page_viewed", "email_opened", "email_clicked",
        "newsletter_subscribed", "store_visited", "support_called", "support_ticket_opened", "order_placed",
        "order_refunded", "identity_linked", "customers_merged", "consent_changed",
    }  # fmt: skip

    assert required <= set(REGISTRY.names())


def test_kinds__everything_but_orders_refunds_identity_and_consent_is_a_touch():
    kinds = {model.TYPE: model.KIND for model in CORE_EVENT_TYPES}

    assert kinds["order_placed"] == "order" and kinds["order_refunded"] == "refund"
    assert kinds["identity_linked"] == kinds["customers_merged"] == "identity"
    assert kinds["consent_changed"] == "consent"
    touches = [m for m in CORE_EVENT_TYPES if m.KIND == "touch"]
    assert len(touches) == 10 and all(issubclass(m, Touch) for m in touches)


def test_naive_occurred_at__is_refused():
    assert refused_fields(good("page_viewed", occurred_at="2024-03-01T10:00:00")) == ["occurred_at"]


def test_missing_identity__names_customer_id():
    assert refused_fields(good("page_viewed", customer_id=None)) == ["customer_id"]


def test_anonymous_id_alone__is_an_identity():
    event = REGISTRY.validate(good("page_viewed", customer_id=None, anonymous_id="cookie:42"))

    assert event.stream == "anonymous-cookie:42"


def test_customer_id__decides_the_stream_over_anonymous_id():
    event = REGISTRY.validate(good("page_viewed", anonymous_id="cookie:42"))

    assert event.stream == "customer-anna"


@pytest.mark.parametrize("missing", ["customer_id", "anonymous_id"])
def test_identity_linked__needs_both_ids(missing):
    assert refused_fields(good("identity_linked", **{missing: None})) == [missing]


def test_negative_revenue__is_refused():
    body = good("order_placed", data={"order_id": "o-1", "revenue": "-5", "currency": "EUR"})

    assert refused_fields(body) == ["data.revenue"]


def test_revenue__is_an_exact_decimal():
    event = REGISTRY.validate(good("order_placed", data={"order_id": "o-1", "revenue": "0.10", "currency": "EUR"}))

    assert event.data.revenue == Decimal("0.10")


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", ""])
def test_bad_currency__is_refused(currency):
    body = good("order_placed", data={"order_id": "o-1", "revenue": "5", "currency": currency})

    assert refused_fields(body) == ["data.currency"]


def test_negative_refund__is_refused():
    assert refused_fields(good("order_refunded", data={"order_id": "o-1", "amount": "-1"})) == ["data.amount"]


@pytest.mark.parametrize("channel", ["Instagram", "GOOGLE_ADS", "social media", ""])
def test_channel__must_be_a_lower_case_name(channel):
    assert refused_fields(good("ad_clicked", channel=channel)) == ["channel"]


def test_touch_without_channel__is_refused():
    assert refused_fields(good("email_opened", channel=None)) == ["channel"]


def test_unknown_type__is_refused_by_name():
    with pytest.raises(InvalidEvent) as refused:
        REGISTRY.validate(good("page_viewed", type="page_seen"))

    assert refused.value.errors[0].field == "type"
    assert "page_seen" in refused.value.errors[0].reason


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"colour": "red"}, "colour"), ({"data": {"url": "https://x.example", "colour": "red"}}, "data.colour")],
)
def test_unknown_field__is_refused(changes, field):
    assert refused_fields(good("page_viewed", **changes)) == [field]


def test_merge_into_itself__names_the_duplicate_id():
    body = good("customers_merged", data={"duplicate_customer_id": "anna"})

    assert refused_fields(body) == ["data.duplicate_customer_id"]


def test_bad_event_id__is_refused():
    assert refused_fields(good("page_viewed", event_id="not-a-uuid")) == ["event_id"]


def test_several_problems__are_all_reported():
    body = good("order_placed", channel="Web", data={"order_id": "o-1", "revenue": "-1", "currency": "eur"})

    assert set(refused_fields(body)) == {"channel", "data.revenue", "data.currency"}


def test_events__are_frozen():
    event = REGISTRY.validate(good("page_viewed"))

    with pytest.raises(ValueError):
        event.channel = "email"
