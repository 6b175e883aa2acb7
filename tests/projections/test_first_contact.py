from projections.views import first_contact_view
from tests.projections.spec import given, link, merge, order, refund, rows_by, touch


def test_first_contact__the_earliest_touch_of_a_group_is_its_first_contact():
    given(
        touch("email", at="2024-01-05", customer="42"),
        touch("instagram", at="2024-01-01", customer="42"),
    ).then(first_contact_view, {"reached": 1, "rows": [{"channel": "instagram", "reached": 1}]})


def test_first_contact__link_after_touches_moves_first_contact_back():
    given(
        touch("instagram", at="2021-03-01", anon="ig:@anna"),
        touch("email", at="2024-01-05", customer="42"),
    ).when(
        link("ig:@anna", "42", at="2024-01-06"),
    ).then(first_contact_view, {"reached": 1, "rows": [{"channel": "instagram", "reached": 1}]})


def test_first_contact__link_before_touches_attaches_the_later_anonymous_touches():
    given(
        link("ig:@anna", "42", at="2024-01-01"),
        touch("email", at="2024-01-05", customer="42"),
    ).when(
        touch("instagram", at="2024-01-02", anon="ig:@anna"),
    ).then(first_contact_view, {"reached": 1, "rows": [{"channel": "instagram", "reached": 1}]})


def test_first_contact__a_late_event_takes_its_place_by_occurred_at():
    given(touch("email", at="2024-01-05", customer="42")).when(
        touch("store", at="2024-01-01", customer="42")
    ).then(first_contact_view, {"rows": [{"channel": "store"}]})


def test_first_contact__a_duplicate_event_changes_nothing():
    first = touch("instagram", at="2024-01-01", customer="42")
    converting = order("o-1", "100", at="2024-01-02", customer="42")

    given(first, converting).when(first, converting).then(
        first_contact_view, {"reached": 1, "converted": 1, "revenue": 100.0}
    )


def test_first_contact__converted_means_the_first_order_came_after_the_first_contact():
    document = given(
        touch("instagram", at="2024-01-01", customer="before"),
        order("o-1", "100", at="2024-01-02", customer="before"),
        order("o-2", "100", at="2024-01-01", customer="after"),
        touch("instagram", at="2024-01-02", customer="after"),
    ).then(first_contact_view, {"reached": 2, "converted": 1, "conversion_rate": 0.5})

    assert rows_by(document, "channel")["instagram"]["revenue"] == 100.0


def test_first_contact__revenue_is_net_lifetime_revenue_of_the_converted():
    given(
        touch("email", at="2024-01-01", customer="42"),
        order("o-1", "100", at="2024-01-02", customer="42"),
        order("o-2", "50.50", at="2024-03-02", customer="42"),
        refund("o-1", "30", at="2024-01-09", customer="42"),
    ).then(first_contact_view, {"rows": [{"channel": "email", "converted": 1, "revenue": 120.5}]})


def test_first_contact__merged_customers_count_as_one_group():
    given(
        touch("email", at="2024-01-05", customer="41"),
        touch("ads", at="2024-01-01", customer="42"),
        merge("41", "42", at="2024-02-01"),
    ).then(first_contact_view, {"reached": 1, "rows": [{"channel": "ads", "reached": 1}]})


def test_first_contact__by_campaign_groups_touches_without_one_under_none():
    document = given(
        touch("instagram", at="2024-01-01", customer="1", campaign="spring"),
        touch("instagram", at="2024-01-01", customer="2", campaign="spring"),
        touch("email", at="2024-01-01", customer="3"),
    ).then(first_contact_view, {"group_by": "campaign"}, group_by="campaign")

    assert {row["campaign"]: row["reached"] for row in document["rows"]} == {"spring": 2, "(none)": 1}


def test_first_contact__from_and_to_filter_groups_by_first_contact_time():
    given(
        touch("instagram", at="2024-01-31T23:59", customer="1"),
        touch("email", at="2024-02-01", customer="2"),
        touch("email", at="2024-02-29T23:59", customer="3"),
        touch("store", at="2024-03-01", customer="4"),
    ).then(
        first_contact_view,
        {"from": "2024-02-01T00:00:00Z", "to": "2024-03-01T00:00:00Z", "reached": 2, "rows": [{"channel": "email"}]},
        start="2024-02-01",
        end="2024-03-01",
    )


def test_first_contact__rows_are_ordered_by_groups_reached():
    document = given(
        touch("email", at="2024-01-01", customer="1"),
        touch("store", at="2024-01-01", customer="2"),
        touch("store", at="2024-01-01", customer="3"),
    ).then(first_contact_view, {})

    assert [row["channel"] for row in document["rows"]] == ["store", "email"]
