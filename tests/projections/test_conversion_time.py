import numpy as np
import pytest

from projections.figures import bucket, quantile
from projections.views import conversion_time_view
from tests.projections.spec import NOW, given, order, touch


def converting(customer: str, first: str, ordered: str, channel: str = "email"):
    return touch(channel, at=first, customer=customer), order(f"o-{customer}", "10", at=ordered, customer=customer)


def test_conversion_time__days_from_first_contact_to_first_order_per_first_channel():
    given(
        *converting("1", "2024-01-01", "2024-01-03T12:00"),
        order("o-1b", "10", at="2024-05-01", customer="1"),
    ).then(
        conversion_time_view,
        {"rows": [{"first_channel": "email", "conversions": 1, "mean_days": 2.5, "median_days": 2.5, "p90_days": 2.5}]},
        now=NOW,
    )


def test_conversion_time__p90_interpolates_linearly_between_closest_ranks():
    elapsed_days = [1, 2, 3, 4, 10]
    events = [e for n, d in enumerate(elapsed_days) for e in converting(str(n), "2024-01-01", f"2024-01-{1 + d:02d}")]

    document = given(*events).then(conversion_time_view, {"conversions": 5}, now=NOW)

    assert document["p90_days"] == pytest.approx(float(np.percentile(elapsed_days, 90))) == 7.6
    assert document["median_days"] == 3.0 and document["mean_days"] == 4.0


@pytest.mark.parametrize(
    ("ordered", "expected"),
    [
        ("2024-01-01T23:59:59", "same_day"),
        ("2024-01-02T00:00:00", "1-7d"),
        ("2024-01-08T23:59:59", "1-7d"),
        ("2024-01-09T00:00:00", "8-30d"),
        ("2024-01-31T23:59:59", "8-30d"),
        ("2024-02-01T00:00:00", "31-90d"),
        ("2024-04-01T00:00:00", "91-365d"),
        ("2024-12-31T23:59:59", "91-365d"),
        ("2025-01-01T00:00:00", ">1y"),
    ],
)
def test_conversion_time__histogram_buckets_count_whole_days_elapsed(ordered, expected):
    document = given(*converting("1", "2024-01-01", ordered)).then(conversion_time_view, {}, now=NOW)

    assert [name for name, count in document["histogram"].items() if count] == [expected]


def test_conversion_time__same_day_means_less_than_24_hours_not_the_calendar_day():
    document = given(*converting("1", "2024-01-01T22:00", "2024-01-02T06:00")).then(conversion_time_view, {}, now=NOW)

    assert document["histogram"]["same_day"] == 1
    assert "less than 24 hours" in document["bucket_rule"]


def test_conversion_time__an_order_before_any_touch_is_no_conversion_time():
    given(
        order("o-1", "10", at="2024-01-01", customer="1"),
        touch("email", at="2024-01-05", customer="1"),
    ).then(conversion_time_view, {"conversions": 0, "mean_days": None, "rows": []}, now=NOW)


def test_conversion_time__path_length_counts_touches_before_the_first_order_including_none():
    given(
        touch("a", at="2024-01-01", customer="1"),
        touch("b", at="2024-01-02", customer="1"),
        order("o-1", "10", at="2024-01-03", customer="1"),
        touch("c", at="2024-01-04", customer="1"),
        order("o-2", "10", at="2024-01-03", customer="2"),
    ).then(
        conversion_time_view,
        {"path_length": {
            "customers": 2,
            "distribution": [{"touches": 0, "customers": 1}, {"touches": 2, "customers": 1}],
        }},
        now=NOW,
    )


def test_conversion_time__prospects_age_since_first_contact_is_measured_at_now():
    given(
        touch("instagram", at="2024-12-01", anon="a"),
        touch("email", at="2024-12-30", anon="a"),
        touch("instagram", at="2024-12-31T12:00", anon="b"),
    ).then(
        conversion_time_view,
        {
            "prospects": {
                "prospects": 2,
                "mean_days": 15.75,
                "rows": [{"first_channel": "instagram", "prospects": 2, "histogram": {"same_day": 1, "31-90d": 1}}],
            }
        },
        now="2025-01-01T00:00:00Z",
    )


def test_conversion_time__grouped_by_first_campaign():
    given(
        touch("email", at="2024-01-01", customer="1", campaign="welcome"),
        order("o-1", "10", at="2024-01-02", customer="1"),
    ).then(
        conversion_time_view,
        {"group_by": "first_campaign", "rows": [{"first_campaign": "welcome", "conversions": 1}]},
        now=NOW,
        group_by="first_campaign",
    )


@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_quantile__matches_numpy_linear_interpolation(q):
    values = [0.5, 1.25, 3.0, 3.0, 8.0, 13.5, 21.0]

    assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_bucket__a_year_and_a_day_is_over_a_year():
    assert bucket(365.999) == "91-365d" and bucket(366.0) == ">1y"
