import itertools
from datetime import datetime, timedelta, timezone

from projections import identity
from projections.identity import IdentityGraph
from tests.projections.spec import link, logged, merge, touch

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def graph_of(*facts) -> IdentityGraph:
    graph = identity.initial_state()
    for kind, fact in facts:
        (graph.add_link if kind == "link" else graph.add_merge)(fact)
    return graph


def linked(anon, customer, at, position):
    return "link", (day(at), position, f"anonymous-{anon}", f"customer-{customer}")


def merged(duplicate, survivor, at, position):
    return "merge", (day(at), position, f"customer-{duplicate}", f"customer-{survivor}")


def test_identity__a_link_puts_the_anonymous_id_in_the_customers_group():
    graph = graph_of(linked("ig:@anna", "42", 1, 10))

    assert graph.root_of("anonymous-ig:@anna") == "customer-42"
    assert graph.members("customer-42") == ("anonymous-ig:@anna", "customer-42")


def test_identity__an_unknown_identity_is_its_own_group():
    graph = graph_of()

    assert graph.root_of("anonymous-nobody") == "anonymous-nobody"
    assert graph.members("anonymous-nobody") == ("anonymous-nobody",)


def test_identity__an_anonymous_id_linked_to_two_customers_follows_the_earliest_link():
    graph = graph_of(linked("dev-1", "b", 5, 10), linked("dev-1", "a", 2, 20))

    assert graph.root_of("anonymous-dev-1") == "customer-a"
    assert graph.members("customer-b") == ("customer-b",)
    [conflict] = graph.link_conflicts()
    assert conflict.winner[3] == "customer-a" and [loser[3] for loser in conflict.losers] == ["customer-b"]


def test_identity__links_at_the_same_time_are_decided_by_position():
    graph = graph_of(linked("dev-1", "b", 1, 30), linked("dev-1", "a", 1, 40))

    assert graph.root_of("anonymous-dev-1") == "customer-b"


def test_identity__the_same_link_stated_twice_is_no_conflict():
    graph = graph_of(linked("dev-1", "a", 1, 10), linked("dev-1", "a", 3, 20))

    assert graph.link_conflicts() == []


def test_identity__a_chain_of_merges_is_followed_to_the_last_survivor():
    graph = graph_of(linked("dev-1", "a", 1, 10), merged("a", "b", 2, 20), merged("b", "c", 3, 30))

    assert graph.root_of("anonymous-dev-1") == "customer-c"
    assert graph.members("customer-c") == ("anonymous-dev-1", "customer-a", "customer-b", "customer-c")


def test_identity__a_customer_merged_into_two_survivors_follows_the_earliest_merge():
    graph = graph_of(merged("d", "late", 9, 10), merged("d", "early", 4, 20))

    assert graph.root_of("customer-d") == "customer-early"
    [conflict] = graph.merge_conflicts()
    assert conflict.node == "customer-d" and conflict.losers[0][3] == "customer-late"


def test_identity__a_merge_cycle_ignores_the_latest_merge_of_the_cycle():
    graph = graph_of(merged("a", "b", 1, 10), merged("b", "c", 2, 20), merged("c", "a", 3, 30))

    assert {graph.root_of(f"customer-{c}") for c in "abc"} == {"customer-c"}
    [cycle] = graph.merge_cycles()
    assert cycle.members == ("customer-a", "customer-b", "customer-c")
    assert cycle.ignored[2:] == ("customer-c", "customer-a")


def test_identity__the_groups_do_not_depend_on_the_order_facts_arrive_in():
    facts = [
        linked("dev-1", "a", 1, 10),
        linked("dev-1", "b", 2, 20),
        merged("a", "b", 3, 30),
        merged("b", "a", 4, 40),
        linked("dev-2", "c", 5, 50),
        merged("c", "a", 6, 60),
    ]
    # by hand: dev-1 belongs to a (earliest link); b->a closes the a->b cycle, so it is
    # ignored and b is the root; c merges into a, dev-2 comes with c: one group under b
    everyone = ("anonymous-dev-1", "anonymous-dev-2", "customer-a", "customer-b", "customer-c")
    expected = {node: "customer-b" for node in everyone}
    for order in itertools.permutations(facts):
        graph = graph_of(*order)
        roots = {node: graph.root_of(node) for node in sorted(graph.nodes())}
        assert roots == expected, order


def test_identity__settling_reports_the_old_and_the_new_root_of_what_moved():
    graph = graph_of(linked("dev-1", "a", 1, 10))
    graph.take_changed_roots()

    graph.add_merge(merged("a", "b", 2, 20)[1])

    assert graph.take_changed_roots() == {"customer-a", "customer-b"}
    assert graph.take_changed_roots() == set()


def test_identity__removing_a_fact_restores_the_groups_before_it():
    graph = graph_of(linked("dev-1", "a", 1, 10))
    fact = merged("a", "b", 2, 20)[1]
    graph.add_merge(fact)

    graph.remove_merge(fact)

    assert graph.root_of("anonymous-dev-1") == "customer-a"
    assert graph.members("customer-b") == ("customer-b",)


def test_identity__evolve_reads_identity_events_and_ignores_the_rest():
    events = [link("dev-1", "a", at="2024-01-01"), touch("x", at="2024-01-02", anon="dev-1"),
              merge("a", "b", at="2024-01-03")]

    graph = identity.initial_state()
    for entry in logged(events):
        graph = identity.evolve(graph, entry)

    assert graph.root_of("anonymous-dev-1") == "customer-b"
    assert identity.HANDLES == {"identity_linked", "customers_merged"}


def test_identity__a_conflict_ends_when_a_competing_link_is_removed():
    graph = graph_of(linked("dev-1", "b", 5, 10), linked("dev-1", "a", 2, 20), linked("dev-1", "a", 6, 30))
    _, fact = linked("dev-1", "b", 5, 10)

    graph.remove_link(fact)

    assert graph.link_conflicts() == []
    graph.add_link(fact)
    [conflict] = graph.link_conflicts()
    assert conflict.winner[3] == "customer-a" and [loser[3] for loser in conflict.losers] == ["customer-b"]
