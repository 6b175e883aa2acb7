from projections.figures import quintile_scores
from projections.views import funnel_view, prospects_view, top_customers_view
from tests.projections.spec import NOW, given, link, order, refund, touch


def buyer(customer: str, *revenues: str, last: str = "2024-06-01"):
    events = [order(f"o-{customer}-{n}", revenue, at=f"2024-01-{n + 1:02d}", customer=customer)
              for n, revenue in enumerate(revenues[:-1])]
    return [*events, order(f"o-{customer}-last", revenues[-1], at=last, customer=customer)]


def test_top_customers__ranked_by_net_revenue_after_refunds():
    given(
        *buyer("big", "500"),
        refund("o-big-last", "450", at="2024-06-02", customer="big"),
        *buyer("steady", "100", "100"),
    ).then(
        top_customers_view,
        {"customers": 2, "revenue": 250.0, "rows": [
            {"identity": "customer-steady", "revenue": 200.0, "orders": 2},
            {"identity": "customer-big", "revenue": 50.0, "gross_revenue": 500.0, "refunded": 450.0},
        ]},
        now=NOW,
    )


def test_top_customers__ranked_by_orders():
    given(*buyer("one", "900"), *buyer("three", "1", "1", "1")).then(
        top_customers_view, {"by": "orders", "rows": [{"identity": "customer-three"}, {"identity": "customer-one"}]},
        now=NOW, by="orders",
    )


def test_top_customers__recency_frequency_monetary_scores_are_quintiles():
    events = [e for n in range(5) for e in buyer(str(n), *(["10"] * (n + 1)), last=f"2024-0{n + 1}-15")]

    document = given(*events).then(top_customers_view, {"customers": 5}, now=NOW, by="rfm", limit=5)

    assert [row["rfm"] for row in document["rows"]] == ["555", "444", "333", "222", "111"]
    assert document["rows"][0]["recency_days"] == 231.0


def test_top_customers__limit_keeps_the_best():
    given(*buyer("a", "1"), *buyer("b", "2"), *buyer("c", "3")).then(
        top_customers_view, {"limit": 1, "customers": 3, "rows": [{"identity": "customer-c"}]}, now=NOW, limit=1
    )


def test_quintile_scores__equal_values_share_a_score():
    assert quintile_scores([5, 5, 5, 1]) == [2, 2, 2, 1]
    assert quintile_scores([7]) == [1]
    assert quintile_scores(list(range(10))) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_prospects__groups_with_touches_and_no_order_most_recently_active_first():
    given(
        touch("ads", at="2024-11-01", anon="quiet"),
        touch("ads", at="2024-12-01", anon="active"),
        touch("email", at="2024-12-30", anon="active"),
        touch("ads", at="2024-12-01", customer="buyer"),
        order("o-1", "10", at="2024-12-02", customer="buyer"),
    ).then(
        prospects_view,
        {"prospects": 2, "rows": [
            {"identity": "anonymous-active", "touches": 2, "channels": ["ads", "email"], "age_days": 31.0,
             "days_since_last_touch": 2.0, "first_contact": {"channel": "ads"}, "last_touch": {"channel": "email"}},
            {"identity": "anonymous-quiet"},
        ]},
        now=NOW,
    )


def test_prospects__filtered_by_first_contact_channel():
    given(touch("ads", at="2024-11-01", anon="a"), touch("email", at="2024-11-01", anon="b")).then(
        prospects_view, {"channel": "email", "prospects": 1, "rows": [{"identity": "anonymous-b"}]},
        now=NOW, channel="email",
    )


def test_prospects__a_prospect_linked_to_a_buyer_is_no_longer_a_prospect():
    given(touch("ads", at="2024-11-01", anon="a"), order("o-1", "10", at="2024-11-02", customer="1")).when(
        link("a", "1", at="2024-11-03")
    ).then(prospects_view, {"prospects": 0, "rows": []}, now=NOW)


def test_funnel__reached_then_converted_then_repeat_buyers():
    given(
        touch("ads", at="2024-01-01", anon="prospect"),
        touch("ads", at="2024-01-01", customer="once"),
        order("o-1", "10", at="2024-01-02", customer="once"),
        touch("ads", at="2024-01-01", customer="twice"),
        order("o-2", "10", at="2024-01-02", customer="twice"),
        order("o-3", "10", at="2024-01-05", customer="twice"),
        order("o-4", "10", at="2024-01-05", customer="no-touch"),
    ).then(
        funnel_view,
        {"reached": 3, "prospects": 1, "converted": 2, "repeat_buyers": 1, "customers": 3,
         "customers_without_touch_before_order": 1, "conversion_rate": 0.6667, "repeat_rate": 0.5,
         "stages": [{"stage": "reached", "groups": 3}, {"stage": "converted", "groups": 2},
                    {"stage": "repeat_buyers", "groups": 1}]},
    )
