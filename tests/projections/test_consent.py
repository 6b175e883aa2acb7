"""Analytics consent withdrawn: the person leaves every list that names people, from then on;
every aggregate keeps counting them."""

import pytest

from projections.aggregates.customer_value import Prospects, TopCustomers
from projections.aggregates.data_quality import DataQuality
from projections.customer_value import prospects_view, top_customers_view
from projections.data_quality import data_quality_view
from projections.views import all_views
from tests.projections.aggregates.maintained import assert_maintained_like_defined, spec_log
from tests.projections.spec import NOW, consent, fold, given, link, logged, order, refund, touch

PERSON_LEVEL = ("top_customers", "prospects", "data_quality")


def customers():
    return [order("o-ann", "300", at="2024-01-01", customer="ann"),
            order("o-bob", "100", at="2024-01-02", customer="bob")]


def test_top_customers__a_customer_who_withdrew_analytics_consent_is_counted_not_listed():
    given(*customers()).when(consent("analytics", False, at="2024-02-01", customer="ann")).then(
        top_customers_view,
        {"customers": 2, "revenue": 400.0, "consent_withdrawn": 1, "rows": [{"identity": "customer-bob"}]},
        now=NOW,
    )


def test_top_customers__granting_consent_again_brings_the_customer_back():
    given(*customers(), consent("analytics", False, at="2024-02-01", customer="ann")).when(
        consent("analytics", True, at="2024-03-01", customer="ann"),
    ).then(
        top_customers_view,
        {"consent_withdrawn": 0, "rows": [{"identity": "customer-ann"}, {"identity": "customer-bob"}]},
        now=NOW,
    )


def test_top_customers__the_latest_stamp_counts_whatever_order_the_log_holds_them_in():
    given(*customers(), consent("analytics", True, at="2024-03-01", customer="ann")).when(
        consent("analytics", False, at="2024-02-01", customer="ann"),  # arrives late: older than the grant
    ).then(top_customers_view, {"consent_withdrawn": 0, "rows": [{"identity": "customer-ann"}, {}]}, now=NOW)


def test_top_customers__other_purposes_leave_the_list_as_it_is():
    given(*customers()).when(consent("marketing_email", False, at="2024-02-01", customer="ann")).then(
        top_customers_view, {"consent_withdrawn": 0, "rows": [{"identity": "customer-ann"}, {}]}, now=NOW,
    )


def test_top_customers__scores_of_the_listed_still_rank_them_among_every_customer():
    document = given(*customers()).when(consent("analytics", False, at="2024-02-01", customer="ann")).then(
        top_customers_view, {"rows": [{"identity": "customer-bob"}]}, now=NOW,
    )

    assert document["rows"][0]["monetary_score"] == 1  # below ann's revenue, whom it does not show


def test_prospects__a_refusal_at_the_cookie_banner_keeps_the_cookie_off_the_list():
    given(
        touch("seo", at="2024-01-01", anon="cookie:1"),
        touch("ads", at="2024-01-02", anon="cookie:2"),
    ).when(consent("analytics", False, at="2024-01-03", anon="cookie:2")).then(
        prospects_view, {"prospects": 2, "consent_withdrawn": 1, "rows": [{"identity": "anonymous-cookie:1"}]},
        now=NOW,
    )


def test_top_customers__a_cookie_s_refusal_follows_it_into_the_customer_it_is_linked_to():
    given(*customers(), consent("analytics", False, at="2024-01-03", anon="cookie:ann")).when(
        link("cookie:ann", "ann", at="2024-01-04"),
    ).then(top_customers_view, {"consent_withdrawn": 1, "rows": [{"identity": "customer-bob"}]}, now=NOW)


def test_data_quality__rows_naming_the_person_leave_and_the_counts_stay():
    given(
        refund("o-x", "20", at="2024-01-02", customer="ann"),
        refund("o-y", "10", at="2024-01-02", customer="bob"),
    ).when(consent("analytics", False, at="2024-02-01", customer="ann")).then(
        data_quality_view,
        {"refunds_for_unknown_orders": {"count": 2, "amount": 30.0, "rows": [{"identity": "customer-bob"}]}},
    )


def test_data_quality__an_identity_conflict_naming_the_person_leaves_the_rows():
    given(
        link("cookie:shared", "ann", at="2024-01-01"),
        link("cookie:shared", "bob", at="2024-01-02"),  # loses: bob is named as a loser
    ).when(consent("analytics", False, at="2024-02-01", customer="bob")).then(
        data_quality_view, {"identity_conflicts": {"count": 1, "rows": []}},
    )


def test_views__every_aggregate_counts_the_person_as_before():
    log = [
        touch("seo", at="2024-01-01", anon="cookie:ann"), link("cookie:ann", "ann", at="2024-01-02"),
        order("o-ann", "300", at="2024-01-05", customer="ann"), touch("ads", at="2024-01-06", anon="cookie:eve"),
        refund("o-x", "5", at="2024-01-07", customer="ann"), order("o-bob", "50", at="2024-01-08", customer="bob"),
    ]
    withdrawals = [consent("analytics", False, at="2024-01-03", customer="ann"),
                   consent("analytics", False, at="2024-01-03", anon="cookie:eve")]

    before = all_views(fold(logged(log)), now=NOW)
    after = all_views(fold(logged([*log, *withdrawals])), now=NOW)

    assert {name: document for name, document in after.items() if name not in PERSON_LEVEL} == {
        name: document for name, document in before.items() if name not in PERSON_LEVEL}
    assert [after[name]["consent_withdrawn"] for name in ("top_customers", "prospects")] == [1, 1]


@pytest.mark.parametrize("aggregate, definition, params", [
    (TopCustomers, top_customers_view, {"now": NOW, "by": "revenue", "limit": 20}),
    (Prospects, prospects_view, {"now": NOW, "limit": 100, "channel": None}),
    (DataQuality, data_quality_view, {"limit": 100}),
])
def test_maintained__withdrawn_and_granted_again_one_event_at_a_time_equals_the_definition(
        aggregate, definition, params):
    log = spec_log([
        *customers(), touch("seo", at="2024-01-01", anon="cookie:1"),
        refund("o-z", "9", at="2024-01-03", customer="ann"),
        link("cookie:1", "bob", at="2024-01-04"), link("cookie:1", "ann", at="2024-01-05"),
        consent("analytics", False, at="2024-02-01", customer="ann"),
        consent("analytics", False, at="2024-02-01", anon="cookie:1"),
        consent("analytics", True, at="2024-03-01", customer="ann"),
        touch("ads", at="2024-03-02", anon="cookie:2"), consent("analytics", False, at="2024-03-03", anon="cookie:2"),
        link("cookie:2", "bob", at="2024-03-04"),
    ])

    assert_maintained_like_defined(aggregate(), definition, params, log, batches=len(log))
