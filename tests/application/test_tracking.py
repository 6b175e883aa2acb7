"""Segment messages to our events: one test per row of the mapping table in
``application.tracking``, and the time, id and channel rules every message follows."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from application.settings import SettingsError
from application.tracking import MESSAGE_ID_NAMESPACE, MessageError, TrackingConfig, to_event
from events.registry import REGISTRY

RECEIVED = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
CONFIG = TrackingConfig()


def message(type_: str, **fields) -> dict:
    body = {"type": type_, "messageId": "ajs-next-1", "anonymousId": "anon-1", "timestamp": "2026-12-05T11:00:00Z"}
    body.update(fields)
    return {key: value for key, value in body.items() if value is not None}


def mapped(body: dict, config: TrackingConfig = CONFIG) -> dict | None:
    event = to_event(body, received_at=RECEIVED, config=config)
    if event is not None:
        REGISTRY.validate(event)  # every event made is one the registry accepts
    return event


def test_track_order_completed__is_order_placed_with_revenue_and_currency():
    event = mapped(message("track", userId="c-1", event="Order Completed",
                           properties={"order_id": "o-9", "revenue": 25.5, "currency": "eur"}))

    assert event["type"] == "order_placed" and event["customer_id"] == "c-1"
    assert event["data"] == {"order_id": "o-9", "revenue": "25.5", "currency": "EUR"}


def test_track_order_completed__takes_total_when_there_is_no_revenue():
    event = mapped(message("track", userId="c-1", event="Order Completed",
                           properties={"order_id": "o-9", "total": "30.00", "currency": "USD"}))

    assert event["data"]["revenue"] == "30.00"


def test_track_order_completed__without_currency_names_the_property():
    with pytest.raises(MessageError) as refused:
        mapped(message("track", event="Order Completed", properties={"order_id": "o-9", "total": 3}))

    assert refused.value.field == "properties.currency"


def test_track_order_refunded__is_order_refunded():
    event = mapped(message("track", userId="c-1", event="Order Refunded",
                           properties={"order_id": "o-9", "total": 10, "currency": "USD"}))

    assert event["type"] == "order_refunded"
    assert event["data"] == {"order_id": "o-9", "amount": "10", "currency": "USD"}


def test_track_a_configured_name__is_that_touch_type_with_its_fixed_channel():
    event = mapped(message("track", userId="c-1", event="Email Opened", properties={"subject": "Hi"}))

    assert (event["type"], event["channel"]) == ("email_opened", "email")


def test_track_a_name_mapped_in_the_environment__is_that_type_with_the_derived_channel():
    config = TrackingConfig.from_env({"TOUCHPOINTS_TRACK_TYPES": "Store Visited=store_visited; Ad Clicked=ad_clicked"})

    event = mapped(message("track", event="Ad Clicked",
                           context={"page": {"url": "https://shop.example/?gclid=x"}}), config)

    assert (event["type"], event["channel"], event["source"]) == ("ad_clicked", "paid_search", "google")


def test_track_mapping__a_malformed_pair_names_the_variable():
    with pytest.raises(SettingsError, match="TOUCHPOINTS_TRACK_TYPES"):
        TrackingConfig.from_env({"TOUCHPOINTS_TRACK_TYPES": "no equals sign"})


def test_track_an_unmapped_name__is_kept_as_event_tracked():
    event = mapped(message("track", event="Webinar Attended", properties={"minutes": 12}))

    assert event["type"] == "event_tracked" and event["channel"] == "direct"
    assert event["data"] == {"name": "Webinar Attended", "properties": {"minutes": 12}}


def test_page__is_page_viewed_with_the_channel_of_its_landing_url_and_referrer():
    event = mapped(message("page", context={"page": {
        "url": "https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
        "referrer": "https://mail.example.org/", "title": "Shop"}}))

    assert event["type"] == "page_viewed"
    assert (event["channel"], event["source"], event["campaign"]) == ("email", "newsletter", "spring")
    assert event["data"]["title"] == "Shop" and event["data"]["referrer"] == "https://mail.example.org/"


def test_page__context_campaign_is_used_as_analytics_js_parses_it():
    event = mapped(message("page", context={"campaign": {"source": "google", "medium": "cpc", "name": "brand"},
                                            "page": {"url": "https://shop.example/"}}))

    assert (event["channel"], event["campaign"]) == ("paid_search", "brand")


def test_page__a_search_referrer_is_organic_search():
    event = mapped(message("page", properties={"url": "https://shop.example/", "referrer": "https://www.bing.com/"}))

    assert (event["channel"], event["source"]) == ("organic_search", "bing.com")


def test_page__an_internal_referrer_is_direct():
    config = TrackingConfig(internal_hosts=frozenset({"pay.example.net"}))

    event = mapped(message("page", properties={"url": "https://shop.example/", "referrer": "https://pay.example.net/"}),
                   config)

    assert event["channel"] == "direct"


def test_screen__is_page_viewed_titled_by_its_name():
    event = mapped(message("screen", name="Checkout"))

    assert event["type"] == "page_viewed" and event["data"] == {"title": "Checkout"}


def test_identify_with_both_ids__is_identity_linked():
    event = mapped(message("identify", userId="c-1", traits={"email": "a@example.com"}))

    assert (event["type"], event["customer_id"], event["anonymous_id"]) == ("identity_linked", "c-1", "anon-1")
    assert "traits" not in event and "data" not in event


def test_identify_with_one_id__stores_nothing():
    assert mapped(message("identify", anonymousId=None, userId="c-1")) is None


def test_alias_of_the_anonymous_id__is_identity_linked():
    event = mapped(message("alias", userId="c-1", previousId="anon-1"))

    assert (event["type"], event["customer_id"], event["anonymous_id"]) == ("identity_linked", "c-1", "anon-1")


def test_alias_of_a_former_user_id__is_customers_merged():
    event = mapped(message("alias", userId="c-1", previousId="c-old"))

    assert event["type"] == "customers_merged" and event["customer_id"] == "c-1"
    assert event["data"] == {"duplicate_customer_id": "c-old"} and "anonymous_id" not in event


def test_group__is_group_associated():
    event = mapped(message("group", userId="c-1", groupId="acme", traits={"plan": "pro"}))

    assert event["type"] == "group_associated" and event["data"] == {"group_id": "acme", "traits": {"plan": "pro"}}


def test_message_id__a_uuid_is_kept_and_any_other_text_becomes_its_uuid5():
    given = str(uuid.uuid4())

    assert mapped(message("page", messageId=given))["event_id"] == given
    assert mapped(message("page", messageId="ajs-next-1"))["event_id"] == str(uuid.uuid5(MESSAGE_ID_NAMESPACE,
                                                                                         "ajs-next-1"))


def test_message_id__missing_is_derived_from_the_message_so_a_retry_has_the_same_id():
    first = mapped(message("page", messageId=None, sentAt="2026-12-05T11:00:01Z"))
    retry = mapped(message("page", messageId=None, sentAt="2026-12-05T11:05:00Z"))

    assert first["event_id"] == retry["event_id"]


def test_time__timestamp_wins():
    assert mapped(message("page"))["occurred_at"] == "2026-12-05T11:00:00+00:00"


def test_time__without_timestamp_the_clock_skew_is_corrected():
    # the device's clock is 10 minutes ahead: it sent at 11:10 by its clock what happened at 11:05
    event = mapped(message("page", timestamp=None, originalTimestamp="2026-12-05T11:05:00Z",
                           sentAt="2026-12-05T11:10:00Z"))

    assert event["occurred_at"] == "2026-12-05T11:55:00+00:00"


def test_time__with_no_times_at_all_it_is_the_receive_time():
    assert mapped(message("page", timestamp=None))["occurred_at"] == RECEIVED.isoformat()


@pytest.mark.parametrize(("changes", "field"), [
    ({"anonymousId": None}, "userId"),
    ({"type": "launch"}, "type"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"anonymousId": {"nested": 1}}, "anonymousId"),
])
def test_invalid_message__names_the_field(changes, field):
    with pytest.raises(MessageError) as refused:
        mapped(message("page", **changes))

    assert refused.value.field == field
