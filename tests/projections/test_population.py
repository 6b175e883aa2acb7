from datetime import datetime, timezone

import pytest

from projections import population
from projections.attribution import Path
from projections.journey import IdentityJourney
from tests.projections.spec import fold, given, link, logged, merge, order, touch


def test_population__resolves_a_customer_id_an_anonymous_id_or_a_stream_name_to_the_root():
    pop = given(
        touch("instagram", at="2024-01-01", anon="ig:@anna"), link("ig:@anna", "42", at="2024-01-02")
    ).population()

    assert population.resolve(pop, "42") == "customer-42"
    assert population.resolve(pop, "ig:@anna") == "customer-42"
    assert population.resolve(pop, "anonymous-ig:@anna") == "customer-42"
    assert population.resolve(pop, "nobody") is None


def test_population__a_merged_customer_resolves_to_the_survivor():
    pop = given(touch("email", at="2024-01-01", customer="41"), merge("41", "42", at="2024-01-02")).population()

    assert population.resolve(pop, "41") == "customer-42"
    assert population.group_summary(pop, "customer-41") is None


def test_population__members_are_every_stream_of_the_group():
    pop = given(
        touch("instagram", at="2024-01-01", anon="ig:@anna"),
        link("ig:@anna", "42", at="2024-01-02"),
        link("cookie-1", "42", at="2024-01-03"),
    ).population()

    assert population.members(pop, "customer-42") == ("anonymous-cookie-1", "anonymous-ig:@anna", "customer-42")


def test_population__a_late_event_takes_its_place_by_occurred_at():
    spec = given(touch("email", at="2024-01-05", customer="42")).when(touch("store", at="2024-01-01", customer="42"))

    pop = spec.population()

    assert [t[2] for t in population.group_summary(pop, "customer-42").touches] == ["store", "email"]


def test_population__a_group_summary_is_reused_until_the_group_changes():
    events = logged([touch("email", at="2024-01-01", customer="42"), touch("ads", at="2024-01-01", customer="7"),
                     touch("store", at="2024-01-02", customer="42")])
    pop = fold(events[:2])
    before_42, before_7 = population.group_summary(pop, "customer-42"), population.group_summary(pop, "customer-7")

    population.evolve(pop, events[2])

    assert population.group_summary(pop, "customer-7") is before_7
    assert population.group_summary(pop, "customer-42") is not before_42
    assert len(population.group_summary(pop, "customer-42").touches) == 2


def test_population__applying_each_identitys_own_fold_equals_the_full_fold():
    entries = given(
        touch("instagram", at="2024-01-01", anon="ig:@anna"),
        order("o-1", "50", at="2024-01-03", customer="42"),
        link("ig:@anna", "42", at="2024-01-02"),
        merge("41", "42", at="2024-01-04"),
        touch("email", at="2024-01-01", customer="41"),
    ).logged()
    full = fold(entries)
    journeys: dict[str, IdentityJourney] = {}
    for entry in entries:
        journeys.setdefault(entry.stream, IdentityJourney(entry.stream)).apply(entry)

    live = population.initial_state()
    for key, journey in journeys.items():
        population.apply_journey(live, key, IdentityJourney.from_bytes(journey.to_bytes()))

    assert {g.root: (g.members, g.touches, g.orders) for g in live.groups()} == {
        g.root: (g.members, g.touches, g.orders) for g in full.groups()
    }


def test_population__applying_a_newer_journey_replaces_the_older_one():
    first, second = logged([touch("email", at="2024-01-01", customer="42"), link("dev", "42", at="2024-01-02")])
    old, new = IdentityJourney("customer-42"), IdentityJourney("customer-42")
    old.apply(first)
    new.apply(first)
    new.apply(second)
    pop = population.apply_journey(population.initial_state(), "customer-42", old)

    population.apply_journey(pop, "customer-42", new)

    assert population.members(pop, "customer-42") == ("anonymous-dev", "customer-42")


def test_population__a_journey_applied_under_another_key_is_refused():
    with pytest.raises(ValueError, match="journey"):
        population.apply_journey(population.initial_state(), "customer-1", IdentityJourney("customer-2"))


def test_conversion_paths__touches_strictly_before_the_first_order_with_their_age_in_days():
    pop = given(
        touch("instagram", at="2024-01-01", anon="a"),
        touch("email", at="2024-01-08T12:00", customer="42"),
        order("o-1", "80", at="2024-01-11", customer="42"),
        touch("store", at="2024-01-12", customer="42"),
        order("o-2", "20", at="2024-01-13", customer="42"),
        link("a", "42", at="2024-01-20"),
    ).population()

    assert population.conversion_paths(pop) == [Path((("instagram", 10.0), ("email", 2.5)), True, 80.0)]


def test_conversion_paths__lookback_keeps_touches_within_n_days_before_the_conversion():
    pop = given(
        touch("instagram", at="2024-01-01", customer="42"),
        touch("email", at="2024-01-04", customer="42"),
        order("o-1", "80", at="2024-01-11", customer="42"),
    ).population()

    assert population.conversion_paths(pop, lookback_days=7) == [Path((("email", 7.0),), True, 80.0)]


def test_conversion_paths__a_prospects_window_ends_at_its_last_touch():
    pop = given(
        touch("instagram", at="2024-01-01", anon="a"),
        touch("email", at="2024-01-09", anon="a"),
        touch("store", at="2024-01-10", anon="a"),
    ).population()

    assert population.conversion_paths(pop, lookback_days=2) == [Path((("email", 1.0), ("store", 0.0)), False, 0.0)]
    assert population.conversion_paths(pop, include_non_converting=False) == []


def test_conversion_paths__from_and_to_select_conversions_and_prospects_by_their_end():
    pop = given(
        touch("instagram", at="2024-01-01", customer="in"),
        order("o-1", "10", at="2024-02-10", customer="in"),
        touch("instagram", at="2024-01-01", customer="out"),
        order("o-2", "10", at="2024-03-01", customer="out"),
        touch("email", at="2024-02-15", anon="prospect-in"),
        touch("email", at="2024-01-15", anon="prospect-out"),
    ).population()

    paths = population.conversion_paths(
        pop, start=datetime(2024, 2, 1, tzinfo=timezone.utc), end=datetime(2024, 3, 1, tzinfo=timezone.utc)
    )

    assert sorted((p.converted, p.touches[0][0], p.value) for p in paths) == [
        (False, "email", 0.0), (True, "instagram", 10.0),
    ]


def test_conversion_paths__by_campaign_labels_touches_without_one_as_none():
    pop = given(
        touch("instagram", at="2024-01-01", customer="42", campaign="spring"),
        touch("email", at="2024-01-02", customer="42"),
        order("o-1", "10", at="2024-01-03", customer="42"),
    ).population()

    [path] = population.conversion_paths(pop, group_by="campaign")

    assert [label for label, _ in path.touches] == ["spring", "(none)"]


def test_conversion_paths__an_order_without_a_touch_before_it_is_an_empty_path():
    pop = given(
        order("o-1", "10", at="2024-01-03", customer="42"), touch("email", at="2024-01-04", customer="42")
    ).population()

    assert population.conversion_paths(pop) == [Path((), True, 10.0)]
