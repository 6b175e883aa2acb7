from projections.views import data_quality_view, first_contact_view
from tests.projections.spec import given, link, merge, order, refund, touch


def test_data_quality__an_anonymous_id_linked_to_two_customers_is_reported_with_the_winner():
    spec = given(
        touch("ads", at="2024-01-01", anon="shared-tablet"),
        link("shared-tablet", "bob", at="2024-03-01"),
    ).when(link("shared-tablet", "alice", at="2024-02-01"))

    spec.then(
        data_quality_view,
        {"identity_conflicts": {"count": 1, "rows": [{
            "anonymous": "anonymous-shared-tablet",
            "winner": {"customer": "customer-alice", "occurred_at": "2024-02-01T00:00:00Z"},
            "losers": [{"customer": "customer-bob", "occurred_at": "2024-03-01T00:00:00Z"}],
        }]}},
    )
    spec.then(first_contact_view, {"reached": 1})


def test_data_quality__a_merge_cycle_is_reported_with_the_merge_it_ignored():
    given(
        touch("ads", at="2024-01-01", customer="a"),
        merge("a", "b", at="2024-02-01"),
        merge("b", "a", at="2024-03-01"),
    ).then(
        data_quality_view,
        {"merge_cycles": {"count": 1, "rows": [{
            "customers": ["customer-a", "customer-b"],
            "ignored_merge": {
                "duplicate": "customer-b", "survivor": "customer-a", "occurred_at": "2024-03-01T00:00:00Z",
            },
        }]}},
    )


def test_data_quality__a_customer_merged_into_two_survivors_is_reported():
    given(merge("d", "s1", at="2024-01-01"), merge("d", "s2", at="2024-02-01")).then(
        data_quality_view,
        {"merge_conflicts": {"count": 1, "rows": [{"duplicate": "customer-d", "winner": {"survivor": "customer-s1"}}]}},
    )


def test_data_quality__a_refund_for_an_order_the_group_does_not_have_is_reported_and_not_subtracted():
    given(
        order("o-1", "100", at="2024-01-01", customer="42"),
        refund("o-unknown", "30", at="2024-01-02", customer="42"),
    ).then(
        data_quality_view,
        {"refunds_for_unknown_orders": {"count": 1, "amount": 30.0, "rows": [
            {"identity": "customer-42", "order_id": "o-unknown", "amount": 30.0}
        ]}},
    )


def test_data_quality__a_refund_finds_its_order_once_the_guest_checkout_is_linked():
    given(
        order("o-1", "100", at="2024-01-01", anon="guest-7"),
        refund("o-1", "30", at="2024-01-02", customer="42"),
    ).when(link("guest-7", "42", at="2024-01-03")).then(
        data_quality_view, {"refunds_for_unknown_orders": {"count": 0}, "orders_without_identity_link": {"count": 0}}
    )


def test_data_quality__refunds_above_the_order_revenue_are_capped_and_reported():
    given(
        order("o-1", "100", at="2024-01-01", customer="42"),
        refund("o-1", "80", at="2024-01-02", customer="42"),
        refund("o-1", "80", at="2024-01-03", customer="42"),
    ).then(
        data_quality_view,
        {"over_refunded_orders": {"count": 1, "rows": [{"order_id": "o-1", "revenue": 100.0, "refunds": 160.0}]}},
    )


def test_data_quality__a_second_order_with_the_same_id_is_reported_and_counted_once():
    given(
        order("o-1", "100", at="2024-01-02", customer="42"),
        order("o-1", "100", at="2024-01-01", customer="42"),
    ).then(
        data_quality_view,
        {"duplicate_order_ids": {"count": 1, "rows": [{"order_id": "o-1", "occurred_at": "2024-01-02T00:00:00Z"}]}},
    )


def test_data_quality__orders_of_anonymous_ids_never_linked_are_reported():
    given(order("o-1", "25", at="2024-01-01", anon="guest-7")).then(
        data_quality_view,
        {"orders_without_identity_link": {"count": 1, "orders": 1, "rows": [
            {"identity": "anonymous-guest-7", "orders": 1, "revenue": 25.0}
        ]}},
    )


def test_data_quality__several_currencies_are_flagged():
    given(
        order("o-1", "25", at="2024-01-01", customer="1", currency="EUR"),
        order("o-2", "25", at="2024-01-01", customer="2", currency="USD"),
    ).then(data_quality_view, {"currencies": {"EUR": 1, "USD": 1}, "mixed_currencies": True})


def test_data_quality__customers_without_a_touch_before_their_first_order_are_counted():
    given(order("o-1", "25", at="2024-01-01", customer="1")).then(
        data_quality_view, {"customers_without_touch": {"count": 1}}
    )


def test_data_quality__limit_caps_the_example_rows_not_the_count():
    given(*[order(f"o-{n}", "1", at="2024-01-01", anon=f"guest-{n}") for n in range(3)]).then(
        data_quality_view,
        {"limit": 2, "orders_without_identity_link": {"count": 3, "orders": 3, "rows": [
            {"identity": "anonymous-guest-0"}, {"identity": "anonymous-guest-1"},
        ]}},
        limit=2,
    )


def test_data_quality__a_refund_in_a_group_without_any_order_is_reported():
    given(refund("o-9", "15", at="2024-01-02", customer="42")).then(
        data_quality_view, {"refunds_for_unknown_orders": {"count": 1, "amount": 15.0}}
    )
