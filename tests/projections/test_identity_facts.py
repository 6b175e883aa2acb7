"""The identity graph holds a node's one fact as is and a set only for several: adding
and removing facts moves a node between the two without changing what it resolves to."""

from datetime import datetime, timedelta, timezone

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
