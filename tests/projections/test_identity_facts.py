"""The identity graph holds a node's one fact as is and a set only for several: adding
and removing facts moves a node between the two without changing what it resolves to."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.identity import IdentityGraph

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def link_fact(anon, customer, day, position):
    return (T0 + timedelta(days=day), position, f"anonymous-{anon}", f"customer-{customer}")


def test_identity_facts__the_same_link_added_twice_is_added_once():
    graph = IdentityGraph()

    assert graph.add_link(link_fact("d", "a", 1, 10))
    assert not graph.add_link(link_fact("d", "a", 1, 10))


def test_identity_facts__removing_the_winning_link_of_two_leaves_the_other():
    graph = IdentityGraph()
    winner, other = link_fact("d", "a", 1, 10), link_fact("d", "b", 2, 20)
    graph.add_link(winner)
    graph.add_link(other)

    assert graph.remove_link(winner)

    assert graph.root_of("anonymous-d") == "customer-b"
    assert graph.link_conflicts() == []
    assert not graph.remove_link(winner)


def test_identity_facts__removing_a_link_never_added_beside_one_changes_nothing():
    graph = IdentityGraph()
    graph.add_link(link_fact("d", "a", 1, 10))

    assert not graph.remove_link(link_fact("d", "b", 2, 20))
    assert graph.root_of("anonymous-d") == "customer-a"


def test_identity_facts__removing_the_only_link_leaves_the_node_its_own_root():
    graph = IdentityGraph()
    fact = link_fact("d", "a", 1, 10)
    graph.add_link(fact)
    graph.take_changed_roots()

    graph.remove_link(fact)

    assert graph.root_of("anonymous-d") == "anonymous-d"
    assert graph.members("customer-a") == ("customer-a",)
    assert graph.take_changed_roots() == {"anonymous-d", "customer-a"}


def test_identity_facts__a_component_grown_past_a_few_members_keeps_every_one():
    graph = IdentityGraph()
    for device in range(12):
        graph.add_link(link_fact(f"d{device:02}", "a", 1, 10 + device))
    graph.add_link(link_fact("e", "b", 1, 50))

    graph.add_link(link_fact("e", "a", 2, 60))  # joins the two components: conflict, "e" stays with b

    assert graph.members("customer-a") == (*(f"anonymous-d{device:02}" for device in range(12)), "customer-a")
    assert graph.root_of("anonymous-e") == "customer-b"


# --- any sequence of facts added and removed --------------------------------------------

_ANONS = [f"anonymous-d{n}" for n in range(5)]
_CUSTOMERS = [f"customer-c{n}" for n in range(5)]
_NODES = _ANONS + _CUSTOMERS

_link_facts = st.builds(
    lambda anon, customer, day, position: (T0 + timedelta(days=day), position, anon, customer),
    st.sampled_from(_ANONS), st.sampled_from(_CUSTOMERS), st.integers(0, 3), st.integers(0, 3),
)
_merge_facts = st.builds(
    lambda duplicate, survivor, day, position: (T0 + timedelta(days=day), position, duplicate, survivor),
    st.sampled_from(_CUSTOMERS), st.sampled_from(_CUSTOMERS), st.integers(0, 3), st.integers(0, 3),
)


def _resolved(graph: IdentityGraph) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    roots = {node: graph.root_of(node) for node in _NODES}
    return roots, {node: graph.members(node) for node in _NODES}


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(st.booleans(), st.one_of(
    st.tuples(st.just("link"), _link_facts), st.tuples(st.just("merge"), _merge_facts))), min_size=1, max_size=40))
def test_identity_facts__after_any_adds_and_removes_the_groups_are_those_of_the_facts_left(steps):
    # given a graph that facts are added to and removed from, in any order
    graph = IdentityGraph()
    held: set[tuple[str, tuple]] = set()
    roots_before = {node: node for node in _NODES}
    for adding, (kind, fact) in steps:
        # when one fact is added, or one held is removed
        if adding:
            (graph.add_link if kind == "link" else graph.add_merge)(fact)
            held.add((kind, fact))
        elif held:
            kind, fact = sorted(held)[len(held) // 2]
            (graph.remove_link if kind == "link" else graph.remove_merge)(fact)
            held.discard((kind, fact))
        # then every node's root and every group are those of a graph given only the facts
        # held, and the roots reported changed are exactly the old and new roots of what moved
        fresh = IdentityGraph()
        for kind, fact in sorted(held):
            (fresh.add_link if kind == "link" else fresh.add_merge)(fact)
        roots, groups = _resolved(graph)
        assert (roots, groups) == _resolved(fresh)
        moved = {node for node in _NODES if roots[node] != roots_before[node]}
        assert graph.take_changed_roots() == {roots_before[node] for node in moved} | {roots[node] for node in moved}
        roots_before = roots
    assert graph.link_conflicts() == fresh.link_conflicts()
    assert graph.merge_conflicts() == fresh.merge_conflicts()
    assert graph.merge_cycles() == fresh.merge_cycles()
