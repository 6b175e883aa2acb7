"""The groups' slots the aggregates share, and the aggregates that keep a group's
contribution only as its row in their columns."""

import pytest

from projections.aggregates import MaintainedViews
from projections.aggregates.attribution_queries import AttributionQueries
from projections.aggregates.base import GroupSlots
from projections.aggregates.conversion_time import CUSTOMER, PROSPECT, ConversionTime
from projections.aggregates.first_contact_queries import FirstContactQueries
from projections.aggregates.funnel import Funnel
from projections.population import Population, evolve
from tests.projections.aggregates.maintained import demo_log, spec_log
from tests.projections.spec import order, touch


def test_group_slots__new_roots_get_dense_slots_from_zero():
    slots = GroupSlots()

    assert [slots.slot(root) for root in ("a", "b", "c", "b")] == [0, 1, 2, 1]
    assert len(slots) == 3


def test_group_slots__a_released_slot_is_the_next_new_roots():
    slots = GroupSlots()
    for root in ("a", "b", "c"):
        slots.slot(root)

    slots.release("b")

    assert slots.get("b") is None
    assert slots.slot("d") == 1
    assert slots.slot("e") == 3


def test_maintained_views__a_group_that_ends_frees_its_slot_and_empties_it_in_every_aggregate():
    funnel = Funnel()
    views = MaintainedViews([funnel])
    population = Population()
    population.summaries.maintain(views)
    for entry in spec_log([touch("ads", at="2024-03-01", anon="a1"), touch("seo", at="2024-03-02", anon="a2")]):
        evolve(population, entry)
    population.summaries.refresh()
    slot = views.slots.get("anonymous-a1")

    views.update("anonymous-a1", None)
    views.update("anonymous-a3", population.group("anonymous-a2"))

    assert views.contributions(funnel)[slot] is not None  # the new group's, at the freed slot
    assert views.slots.get("anonymous-a3") == slot and len(views.slots) == 2


def test_maintained_views__an_unknown_root_that_ends_changes_nothing():
    views = MaintainedViews([Funnel()])

    views.update("anonymous-nobody", None)

    assert len(views.slots) == 0


def maintained(aggregate, log, *, refresh_every=1):
    """``aggregate`` attached to a population as ``log`` is folded, refreshed every few events
    (so groups change, end and are re-rooted)."""
    views = MaintainedViews([aggregate])
    population = Population()
    population.summaries.maintain(views)
    for number, entry in enumerate(log, start=1):
        evolve(population, entry)
        if number % refresh_every == 0:
            population.summaries.refresh()
    population.summaries.refresh()
    return views, population


@pytest.mark.parametrize("make", [FirstContactQueries, lambda: AttributionQueries(compact_above=16)])
def test_packed_rows__each_slot_holds_exactly_its_groups_contribution(make):
    aggregate = make()
    views, population = maintained(aggregate, demo_log(200, 5), refresh_every=40)

    held = [(views.slots.get(group.root), aggregate.contribution(group)) for group in population.groups()]

    held = [(slot, contribution) for slot, contribution in held if contribution is not None]
    assert held and all(aggregate.holds(slot, contribution) for slot, contribution in held)
    slot, mine = held[0]
    others = {contribution for _, contribution in held[1:]} - {mine}
    assert others and not any(aggregate.holds(slot, other) for other in others)


def test_packed_rows__a_change_that_leaves_the_row_as_it_was_keeps_it_where_it_is():
    aggregate = AttributionQueries()
    log = spec_log([touch("ads", at="2024-03-01", customer="c1"), order("o1", "10", at="2024-03-02", customer="c1")])
    views, population = maintained(aggregate, log)
    group = population.group("customer-c1")
    touches, garbage = aggregate._touches.column("at").size, aggregate._touches.garbage

    views.update(group.root, group)

    assert (aggregate._touches.column("at").size, aggregate._touches.garbage) == (touches, garbage)


def test_conversion_time__each_slot_gives_back_exactly_its_groups_contribution():
    # given conversion time maintained while groups change, end and are re-rooted
    # (a prospect's contribution is kept only in the aggregate's column)
    aggregate = ConversionTime()
    views, population = maintained(aggregate, demo_log(200, 5), refresh_every=40)

    # when each group's contribution is asked of its slot
    held = views.contributions(aggregate)
    expected = {views.slots.get(group.root): aggregate.contribution(group) for group in population.groups()}

    # then customers and prospects alike are given back as they were added, and free slots hold none
    assert {kind for kind, *_ in filter(None, expected.values())} == {CUSTOMER, PROSPECT}
    assert {slot: held[slot] for slot in expected} == expected
    assert all(held[slot] is None for slot in range(len(held)) if slot not in expected)
