from projections.views import paths_view
from tests.projections.spec import given, order, touch


def bought_after(customer: str, *channels: str, revenue: str = "10"):
    events = [touch(ch, at=f"2024-01-{n + 1:02d}", customer=customer) for n, ch in enumerate(channels)]
    return [*events, order(f"o-{customer}", revenue, at="2024-02-01", customer=customer)]


def test_paths__the_most_frequent_sequences_come_first_with_count_and_value():
    given(
        *bought_after("1", "instagram", "email", revenue="10"),
        *bought_after("2", "instagram", "email", revenue="30"),
        *bought_after("3", "store", revenue="99"),
    ).then(
        paths_view,
        {
            "conversions": 3,
            "distinct_paths": 2,
            "rows": [
                {"path": ["instagram", "email"], "conversions": 2, "value": 40.0, "share": 0.6667},
                {"path": ["store"], "conversions": 1, "value": 99.0},
            ],
        },
    )


def test_paths__consecutive_repeats_collapse_by_default():
    given(*bought_after("1", "email", "email", "store", "email")).then(
        paths_view, {"collapse_repeats": True, "rows": [{"path": ["email", "store", "email"]}]}
    )


def test_paths__repeats_are_kept_when_not_collapsed():
    given(*bought_after("1", "email", "email", "store")).then(
        paths_view, {"rows": [{"path": ["email", "email", "store"]}]}, collapse_repeats=False
    )


def test_paths__top_limits_the_rows_not_the_totals():
    given(*bought_after("1", "a"), *bought_after("2", "b"), *bought_after("3", "b")).then(
        paths_view, {"conversions": 3, "distinct_paths": 2, "rows": [{"path": ["b"], "conversions": 2}]}, top=1
    )


def test_paths__conversions_without_a_touch_are_counted_apart():
    given(*bought_after("1", "a"), order("o-2", "5", at="2024-01-01", customer="2")).then(
        paths_view, {"conversions": 1, "unattributed_conversions": 1, "rows": [{"path": ["a"]}]}
    )


def test_paths__lookback_shortens_the_paths():
    given(*bought_after("1", "instagram", "email")).then(
        paths_view, {"lookback_days": 30.5, "rows": [{"path": ["email"]}]}, lookback_days=30.5
    )


def test_paths__prospects_paths_are_counted_as_non_converting():
    given(
        touch("ads", at="2024-01-01", anon="p1"),
        touch("ads", at="2024-01-02", anon="p1"),
        touch("email", at="2024-01-03", anon="p1"),
        touch("ads", at="2024-01-01", anon="p2"),
        touch("email", at="2024-01-02", anon="p2"),
    ).then(
        paths_view,
        {"non_converting": {"prospects": 2, "distinct_paths": 1, "rows": [{"path": ["ads", "email"], "prospects": 2}]}},
    )
