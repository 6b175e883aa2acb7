from projections.views import timeline_view
from tests.projections.spec import consent, given, link, merge, order, refund, touch


def timeline(spec, identity):
    return timeline_view(spec.population(), identity, spec.logged())


def test_timeline__lists_every_event_across_linked_identities_in_touch_order():
    spec = given(
        touch("email", at="2024-01-05", customer="42"),
        touch("instagram", at="2021-03-01", anon="ig:@anna", campaign="launch", type="social_followed"),
        link("ig:@anna", "42", at="2024-01-06"),
        touch("ads", at="2024-01-01", anon="someone-else"),
    )

    document = timeline(spec, "42")

    assert [(e["type"], e["channel"], e["identity"]) for e in document["events"]] == [
        ("social_followed", "instagram", "anonymous-ig:@anna"),
        ("page_viewed", "email", "customer-42"),
        ("identity_linked", None, "customer-42"),
    ]
    assert document["identities"] == ["anonymous-ig:@anna", "customer-42"]
    assert document["events"][0]["campaign"] == "launch" and document["events"][0]["position"] == 20


def test_timeline__an_anonymous_id_resolves_to_its_customers_timeline():
    spec = given(touch("instagram", at="2024-01-01", anon="ig:@anna"), link("ig:@anna", "42", at="2024-01-02"))

    assert timeline(spec, "ig:@anna")["identity"] == "customer-42"


def test_timeline__sums_up_first_contact_first_order_and_net_revenue():
    spec = given(
        touch("instagram", at="2024-01-01", customer="42", campaign="spring"),
        order("o-1", "120", at="2024-01-10", customer="42"),
        order("o-2", "30", at="2024-02-10", customer="42"),
        refund("o-1", "20", at="2024-01-12", customer="42"),
        consent("marketing", True, at="2024-01-01", customer="42"),
    )

    document = timeline(spec, "customer-42")

    assert document["first_contact"] == {
        "occurred_at": "2024-01-01T00:00:00Z", "channel": "instagram", "campaign": "spring",
    }
    assert document["first_order"] == {"occurred_at": "2024-01-10T00:00:00Z", "order_id": "o-1", "revenue": 120.0}
    totals = (document["order_count"], document["revenue"], document["refunded"], document["net_revenue"])
    assert totals == (2, 150.0, 20.0, 130.0)
    assert document["consents"] == {"marketing": {"granted": True, "occurred_at": "2024-01-01T00:00:00Z"}}


def test_timeline__each_event_carries_its_data_and_both_times():
    spec = given(order("o-1", "120.5", at="2024-01-10T08:30", customer="42"))

    [event] = timeline(spec, "42")["events"]

    assert event["data"] == {"order_id": "o-1", "revenue": "120.5", "currency": "EUR"}
    assert event["occurred_at"] == "2024-01-10T08:30:00Z" and event["recorded_at"] == "2030-01-01T00:00:00Z"
    assert event["kind"] == "order"


def test_timeline__an_event_given_twice_is_listed_once():
    seen_twice = touch("email", at="2024-01-05", customer="42")
    spec = given(seen_twice, seen_twice)

    assert len(timeline(spec, "42")["events"]) == 1


def test_timeline__a_merged_customer_shows_the_survivors_whole_timeline():
    spec = given(touch("email", at="2024-01-05", customer="41"), touch("ads", at="2024-01-01", customer="42"),
                 merge("41", "42", at="2024-02-01"))

    document = timeline(spec, "41")

    assert document["identity"] == "customer-42" and document["first_contact"]["channel"] == "ads"


def test_timeline__an_unknown_identity_has_none():
    assert timeline(given(touch("email", at="2024-01-05", customer="42")), "nobody") is None
