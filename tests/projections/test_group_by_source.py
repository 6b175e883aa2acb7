"""``group_by=source``: every view that groups by campaign also groups by a touch's source.

The log is written down as people, each with its touches and orders; the events spread
each person over an anonymous and a customer stream joined by a link, so the views must
resolve identities to find what the brute force reads straight off the people. A touch
without a source counts under ``(none)``, as one without a campaign does.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from projections.conversion_time import conversion_time_view
from projections.first_contact import first_contact_view
from projections.multi_touch import attribution_view
from projections.population import NO_LABEL, Population, evolve
from projections.top_paths import paths_view
from tests.projections.spec import link, logged, order, touch

NOW = "2024-03-01T00:00:00+00:00"

# person -> (touches as (day, channel, source or None), orders as (day, revenue))
PEOPLE: dict[str, tuple[list[tuple[int, str, str | None]], list[tuple[int, int]]]] = {
    "ann": ([(1, "paid_search", "google"), (3, "email", "newsletter"), (5, "referral", "blog.example")], [(6, 120)]),
    "bob": ([(2, "email", None), (4, "paid_search", "google")], [(7, 40)]),
    "cid": ([(3, "paid_search", "google"), (4, "paid_search", "google")], [(9, 10)]),
    "dee": ([(4, "organic_social", "instagram.com"), (8, "email", None)], []),
    "eve": ([(5, "email", "newsletter")], [(2, 99)]),  # ordered before any touch: unattributed
    "fay": ([], [(3, 15)]),
}


def day(number: int, hour: int = 0) -> str:
    return f"2024-01-{number:02d}T{hour:02d}:00"


def events_of_people() -> list:
    """Each person's touches on an anonymous stream until day 3, on the customer's after;
    orders on the customer's; a link joins the two."""
    events = []
    for person, (touches, orders) in PEOPLE.items():
        for number, channel, source in touches:
            where = {"anon": f"cookie-{person}"} if number <= 3 else {"customer": person}
            events.append(touch(channel, at=day(number, 1), source=source, **where))
        for index, (number, revenue) in enumerate(orders):
            events.append(order(f"{person}-{index}", str(revenue), at=day(number, 12), customer=person))
        events.append(link(f"cookie-{person}", person, at=day(10)))
    return sorted(events, key=lambda event: event.occurred_at)


@pytest.fixture(scope="module")
def population() -> Population:
    folded = Population()
    for entry in logged(events_of_people()):
        evolve(folded, entry)
    return folded


def label(source: str | None) -> str:
    return NO_LABEL if source is None else source


def paths_before_first_order() -> dict[str, list[str]]:
    """Each converted person's sources touched strictly before the first order."""
    paths = {}
    for person, (touches, orders) in PEOPLE.items():
        if orders:
            first_order = min(number for number, _ in orders)
            paths[person] = [label(source) for number, _, source in sorted(touches) if number < first_order]
    return paths


def first_order_revenue(person: str) -> int:
    return min(PEOPLE[person][1])[1]


def test_first_contact__by_source_tallies_each_person_under_the_source_of_the_first_touch(population):
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for person, (touches, orders) in PEOPLE.items():
        if not touches:
            continue
        first_day, _, source = min(touches)
        tally = expected[label(source)]
        tally[0] += 1
        if orders and min(number for number, _ in orders) > first_day:
            tally[1] += 1
            tally[2] += sum(revenue for _, revenue in orders)

    document = first_contact_view(population, group_by="source")

    rows = {row["source"]: [row["reached"], row["converted"], row["revenue"]] for row in document["rows"]}
    assert rows == expected
    assert rows[NO_LABEL] == [1, 1, 40]  # bob's first touch names no source


@pytest.mark.parametrize("model", ["first_touch", "last_touch", "linear"])
def test_attribution__by_source_credits_the_sources_of_each_path(population, model):
    credits: Counter[str] = Counter()
    values: Counter[str] = Counter()
    for person, path in paths_before_first_order().items():
        if not path:
            continue
        shares = {"first_touch": [1.0] + [0.0] * (len(path) - 1),
                  "last_touch": [0.0] * (len(path) - 1) + [1.0],
                  "linear": [1 / len(path)] * len(path)}[model]
        for source, share in zip(path, shares):
            credits[source] += share
            values[source] += share * first_order_revenue(person)

    document = attribution_view(population, model=model, group_by="source")

    rows = {row["source"]: (row["conversions"], row["value"]) for row in document["rows"]}
    assert rows == {  # every source on a path has a row, a zero credit included
        source: (pytest.approx(credit, abs=1e-4), pytest.approx(values[source], abs=0.01))
        for source, credit in credits.items()
    }
    assert document["unattributed_conversions"] == 2  # eve and fay: no touch before the order


def test_paths__by_source_are_the_source_sequences_before_each_first_order(population):
    paths = Counter(tuple(path) for path in paths_before_first_order().values() if path)

    document = paths_view(population, group_by="source", collapse_repeats=False)

    assert {tuple(row["path"]): row["conversions"] for row in document["rows"]} == paths
    assert ("(none)", "google") in paths


def test_conversion_time__by_first_source_counts_conversions_after_the_first_touch(population):
    expected = Counter()
    for touches, orders in PEOPLE.values():
        if touches and orders and min(number for number, _ in orders) > min(touches)[0]:
            expected[label(min(touches)[2])] += 1

    document = conversion_time_view(population, now=NOW, group_by="first_source")

    assert {row["first_source"]: row["conversions"] for row in document["rows"]} == expected
