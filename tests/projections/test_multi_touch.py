import math

import pytest

from projections.attribution import MODELS
from projections.views import ViewParameterError, attribution_view, attribution_views
from tests.projections.spec import given, link, order, rows_by, touch


def journey_of(customer: str, *channels: str, ordered: str | None = "2024-01-20", revenue: str = "100"):
    events = [touch(ch, at=f"2024-01-{n + 1:02d}", customer=customer) for n, ch in enumerate(channels)]
    if ordered:
        events.append(order(f"o-{customer}", revenue, at=ordered, customer=customer))
    return events


def test_attribution__first_touch_credits_the_first_channel_of_each_path():
    document = given(*journey_of("1", "instagram", "email"), *journey_of("2", "email", "store")).then(
        attribution_view, {"model": "first_touch", "conversions": 2, "value": 200.0}, model="first_touch"
    )

    assert {label: row["conversions"] for label, row in rows_by(document, "channel").items()} == {
        "instagram": 1.0, "email": 1.0, "store": 0.0,
    }


def test_attribution__linear_gives_a_repeated_channel_several_shares():
    document = given(*journey_of("1", "email", "email", "store")).then(attribution_view, {}, model="linear")

    assert rows_by(document, "channel")["email"]["conversions"] == pytest.approx(2 / 3, abs=1e-4)


def test_attribution__a_customer_without_a_touch_before_the_order_is_unattributed():
    given(*journey_of("1", "email"), order("o-2", "40", at="2024-01-05", customer="2")).then(
        attribution_view,
        {"conversions": 1, "value": 100.0, "unattributed_conversions": 1, "unattributed_value": 40.0},
        model="last_touch",
    )


def test_attribution__the_conversion_value_is_the_first_orders_revenue():
    given(*journey_of("1", "email", revenue="70"), order("o-later", "500", at="2024-02-01", customer="1")).then(
        attribution_view, {"value": 70.0, "rows": [{"channel": "email", "value": 70.0}]}, model="last_touch"
    )


def test_attribution__link_after_the_order_still_brings_the_anonymous_touches_into_the_path():
    given(
        touch("instagram", at="2024-01-01", anon="ig:@anna"),
        order("o-1", "100", at="2024-01-10", customer="42"),
    ).when(link("ig:@anna", "42", at="2024-01-11")).then(
        attribution_view, {"unattributed_conversions": 0, "rows": [{"channel": "instagram", "conversions": 1.0}]},
        model="first_touch",
    )


def test_attribution__lookback_drops_touches_older_than_n_days_before_the_conversion():
    given(*journey_of("1", "instagram", "email", ordered="2024-01-09")).then(
        attribution_view, {"lookback_days": 7.5, "rows": [{"channel": "email", "conversions": 1.0}]},
        model="first_touch", lookback_days=7.5,
    )


def test_attribution__from_and_to_select_conversions_by_their_time():
    given(*journey_of("1", "email", ordered="2024-01-20"), *journey_of("2", "store", ordered="2024-03-20")).then(
        attribution_view, {"conversions": 1, "from": "2024-03-01T00:00:00Z", "rows": [{"channel": "store"}]},
        model="first_touch", start="2024-03-01",
    )


def test_attribution__time_decay_reports_its_half_life_and_favours_recent_touches():
    document = given(*journey_of("1", "instagram", "email", ordered="2024-01-02")).then(
        attribution_view, {"half_life_days": 1.0}, model="time_decay", half_life_days=1.0
    )

    rows = rows_by(document, "channel")
    assert rows["email"]["conversions"] == pytest.approx(2 / 3, abs=1e-4)
    assert rows["instagram"]["conversions"] == pytest.approx(1 / 3, abs=1e-4)


def test_attribution__markov_and_shapley_also_read_the_prospects_paths():
    events = [*journey_of("1", "instagram", "email"), *journey_of("2", "store", ordered=None)]

    for model in ("markov", "shapley"):
        document = given(*events).then(attribution_view, {"non_converting_paths": 1}, model=model)
        assert "store" in rows_by(document, "channel")


def test_attribution__by_campaign_labels_the_rows_campaign():
    given(
        touch("email", at="2024-01-01", customer="1", campaign="welcome"),
        order("o-1", "10", at="2024-01-02", customer="1"),
    ).then(
        attribution_view, {"group_by": "campaign", "rows": [{"campaign": "welcome", "conversions": 1.0}]},
        model="linear", group_by="campaign",
    )


@pytest.mark.parametrize("model", MODELS)
def test_attribution__every_models_credits_add_up_to_the_attributed_totals(model):
    events = [
        *journey_of("1", "instagram", "email", "email"),
        *journey_of("2", "store", "email", revenue="35.5"),
        *journey_of("3", "instagram", revenue="12.25"),
        *journey_of("4", "store", "instagram", ordered=None),
    ]

    document = given(*events).then(attribution_view, {"model": model, "conversions": 3}, model=model)

    assert math.fsum(row["conversions"] for row in document["rows"]) == pytest.approx(3, abs=1e-3)
    assert math.fsum(row["value"] for row in document["rows"]) == pytest.approx(147.75, abs=0.05)


def test_attribution__a_model_asked_alone_or_with_all_others_gives_the_same_document():
    pop = given(*journey_of("1", "instagram", "email"), *journey_of("2", "store", ordered=None)).population()

    together = attribution_views(pop)

    assert all(together[model] == attribution_view(pop, model=model) for model in MODELS)


def test_attribution__an_unknown_model_is_refused_naming_the_parameter():
    with pytest.raises(ViewParameterError) as refused:
        attribution_view(given().population(), model="gut_feeling")

    assert refused.value.param == "model" and "first_touch" in refused.value.reason
