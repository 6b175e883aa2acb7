"""The identity graph: which identity streams make up one person (a *group*).

Nodes are stream names (``customer-<id>``, ``anonymous-<id>``). Facts are

* links ``(occurred_at, position, anonymous stream, customer stream)`` from
  ``identity_linked``: the anonymous id belongs to the customer;
* merges ``(occurred_at, position, duplicate stream, survivor stream)`` from
  ``customers_merged``: the duplicate customer is the survivor (chains followed).

Resolution depends only on the SET of facts, never on the order they arrived:

* an anonymous id belongs to one customer at most: its earliest link (by
  ``occurred_at``, then position) wins; links to other customers are reported
  as identity conflicts and do not join those customers;
* a customer merged into several survivors follows its earliest merge; the
  others are reported as merge conflicts;
* a merge cycle (``a`` into ``b`` ... into ``a``) is broken by ignoring the
  LATEST merge of the cycle (the one that closed it), so the customer that
  survived the earlier merges stays the root; the cycle is reported;
* the root of a group is the customer at the end of its merge chain (or an
  unlinked anonymous stream on its own).

A node's facts are held as the one fact most nodes have, and as a set only when it
has several (a set costs ~200 bytes: a million linked devices would pay ~200 MB). The
one fact is held packed, ``(time in µs × 2^64 + position, target)``: 100 bytes where the
fact's tuple, datetime and position are 164, and two objects fewer for a load to name. A
component's members as a sorted tuple while it is small (most are a customer and a
device or two), as a list beyond.

Most components are one group whose root is the component's representative (a union
keeps the target's side on a tie, so a customer and its devices are represented by the
customer). That is left implicit: the union-find holds only the nodes that are not a
representative, roots only the nodes whose root is not their representative, and groups
only those that are not their representative's whole component. A dict entry costs
~40 bytes; at a million customers these three were ~3 million entries.

Work is incremental: adding a fact only marks its connected component (over
every fact, winning or not) dirty; ``settle`` re-resolves dirty components,
which are small (a customer and its few devices), and records which roots
gained or lost members (``take_changed_roots``: what the population's group cache
summarises again). A mutable aggregate: ``evolve`` updates the graph in place and returns
it; resolution is lazy, so queries settle pending components first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from events.logged import LoggedEvent
from events.times import moment_key, moment_of_key
from projections.journey import LinkFact, MergeFact, link_fact, merge_fact

VERSION = 1
HANDLES: frozenset[str] = frozenset({"identity_linked", "customers_merged"})
_TUPLE_MEMBERS = 8  # components up to this size keep their members in a tuple: merging copies them
Fact = LinkFact  # and MergeFact, the same shape: (occurred_at, position, node, target)
Packed = tuple[int, str]  # a node's one fact: (moment_key(occurred_at, position), target)


def _packed(fact: Fact) -> Packed:
    return (moment_key(fact[0], fact[1]), fact[3])


def _unpacked(node: str, packed: Packed) -> Fact:
    key, target = packed
    return (*moment_of_key(key), node, target)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A node claimed by several targets: ``winner`` is the earliest fact, ``losers``
    the earliest fact per other target."""

    node: str
    winner: tuple[int, int, str, str]
    losers: tuple[tuple[int, int, str, str], ...]


@dataclass(frozen=True, slots=True)
class MergeCycle:
    """Customers whose merges form a cycle; ``ignored`` is the merge left out."""

    members: tuple[str, ...]
    ignored: MergeFact


class IdentityGraph:
    __slots__ = (
        "links", "merges", "_uf", "_components", "_dirty", "_root", "_groups", "_cycles", "_changed",
        "_linked_twice", "_merged_twice",
    )

    def __init__(self) -> None:
        # node -> its one fact packed, or the set of its facts when it has several
        self.links: dict[str, Packed | set[LinkFact]] = {}
        self.merges: dict[str, Packed | set[MergeFact]] = {}
        self._uf: dict[str, str] = {}  # nodes that are not their component's representative -> parent
        self._components: dict[str, tuple[str, ...] | list[str]] = {}  # representative -> members (2 or more)
        self._dirty: set[str] = set()
        self._root: dict[str, str] = {}  # nodes whose group's root is not their representative -> the root
        self._groups: dict[str, tuple[str, ...]] = {}  # roots whose group is not the whole component they represent
        self._cycles: dict[str, MergeCycle] = {}  # keyed by the duplicate of the ignored merge
        self._changed: set[str] = set()
        # nodes with several facts (the only ones that can be in conflict), so reading the
        # conflicts costs what there are, not a walk of every node
        self._linked_twice: set[str] = set()
        self._merged_twice: set[str] = set()

    # --- facts -------------------------------------------------------------------

    def add_link(self, fact: LinkFact) -> bool:
        return self._add(self.links, self._linked_twice, fact)

    def add_merge(self, fact: MergeFact) -> bool:
        return self._add(self.merges, self._merged_twice, fact)

    def remove_link(self, fact: LinkFact) -> bool:
        return self._remove(self.links, self._linked_twice, fact)

    def remove_merge(self, fact: MergeFact) -> bool:
        return self._remove(self.merges, self._merged_twice, fact)

    def _add(self, table: dict[str, Packed | set], several: set[str], fact: Fact) -> bool:
        node = fact[2]
        facts = table.get(node)
        if facts is None:
            table[node] = _packed(fact)
        elif type(facts) is set:
            if fact in facts:
                return False
            facts.add(fact)
        elif facts == _packed(fact):
            return False
        else:
            table[node] = {_unpacked(node, facts), fact}
            several.add(node)
        self._dirty.add(self._union(node, fact[3]))
        return True

    def _remove(self, table: dict[str, Packed | set], several: set[str], fact: Fact) -> bool:
        node = fact[2]
        facts = table.get(node)
        if facts is None:
            return False
        if type(facts) is set:
            if fact not in facts:
                return False
            facts.discard(fact)
            if len(facts) == 1:
                several.discard(node)
                table[node] = _packed(next(iter(facts)))
        elif facts == _packed(fact):
            del table[node]
        else:
            return False
        # components never split: a larger component only costs a larger re-resolution
        self._dirty.add(self._find(fact[2]))
        return True

    # --- union-find over every fact ------------------------------------------------

    def _find(self, node: str) -> str:
        """The representative of ``node``'s component (``node`` itself when it is one, or
        unknown). Singletons have no member list: ``_members`` supplies ``(node,)``."""
        uf = self._uf
        parent = uf.get(node)
        if parent is None:
            return node
        above = uf.get(parent)
        if above is None:  # most nodes: a device whose parent is its customer
            return parent
        path = [node, parent]
        node = above
        parent = uf.get(node)
        while parent is not None:
            path.append(node)
            node = parent
            parent = uf.get(node)
        for step in path:
            uf[step] = node
        return node

    def _members(self, rep: str) -> Sequence[str]:
        return self._components.get(rep) or (rep,)

    def _union(self, a: str, b: str) -> str:
        """Join the components of ``a`` and ``b``; the larger keeps its representative,
        ``b``'s on a tie (a fact's target: the customer a device is linked to)."""
        rb, ra = self._find(a), self._find(b)
        if ra == rb:
            return ra
        components = self._components
        members_a, members_b = components.get(ra, (ra,)), components.pop(rb, (rb,))
        if len(members_a) < len(members_b):
            ra, rb, members_a, members_b = rb, ra, members_b, members_a
            components.pop(rb, None)
        self._uf[rb] = ra
        # the joined nodes' roots stay what they were until the component settles (the old
        # roots are what ``settle`` reports as changed): make the implicit ones explicit
        roots = self._root
        for node in members_b:
            if node not in roots:
                roots[node] = rb
        if len(members_a) + len(members_b) <= _TUPLE_MEMBERS:
            members_a = tuple(sorted((*members_a, *members_b)))
        else:
            if type(members_a) is tuple:
                members_a = list(members_a)
            members_a.extend(members_b)
        components[ra] = members_a
        self._dirty.discard(rb)
        return ra

    # --- resolution ------------------------------------------------------------------

    def settle(self) -> None:
        """Re-resolve every dirty component (cheap when nothing changed)."""
        if not self._dirty:
            return
        reps = {self._find(rep) for rep in self._dirty}
        self._dirty.clear()
        for rep in reps:
            self._resolve(rep, self._members(rep))

    def _resolve(self, rep: str, nodes: Sequence[str]) -> None:
        links, merges = self.links, self.merges
        parent: dict[str, str] = {}
        merge_edge: dict[str, MergeFact] = {}
        for node in nodes:
            facts = links.get(node) or merges.get(node)
            if facts:
                if type(facts) is set:
                    best = min(facts)
                    parent[node] = best[3]
                else:
                    best = None
                    parent[node] = facts[1]  # type: ignore[index]
                if node in merges:
                    merge_edge[node] = best or _unpacked(node, facts)  # type: ignore[arg-type]
        if self._cycles:
            for node in nodes:
                self._cycles.pop(node, None)
        if merge_edge:
            for cycle in _break_cycles(parent, merge_edge):
                self._cycles[cycle.ignored[2]] = cycle

        old_root, changed, groups_of = self._root, self._changed, self._groups
        groups: dict[str, list[str]] = {}
        for node in nodes:
            top = node
            while top in parent:
                top = parent[top]
            members = groups.get(top)
            if members is None:
                groups[top] = [node]
            else:
                members.append(node)
            previous = old_root.get(node, rep)
            if previous != top:
                changed.add(previous)
                changed.add(top)
            if top == rep:
                old_root.pop(node, None)
            else:
                old_root[node] = top
            groups_of.pop(node, None)
        whole = type(nodes) is tuple
        for top, members in groups.items():
            members.sort()
            group = tuple(members)
            if not (whole and top == rep and group == nodes):
                groups_of[top] = group

    def take_changed_roots(self) -> set[str]:
        """Roots (old and new) whose members changed since the last call."""
        self.settle()
        changed, self._changed = self._changed, set()
        return changed

    def root_of(self, node: str) -> str:
        self.settle()
        root = self._root.get(node)
        return self._find(node) if root is None else root

    def members(self, root: str) -> tuple[str, ...]:
        """The nodes of the group ``root`` heads (``(root,)`` for a node that heads none,
        or is unknown)."""
        self.settle()
        group = self._groups.get(root)
        if group is not None:
            return group
        if root in self._root or root in self._uf:  # not a root, or one whose group is held
            return (root,)
        return self._components.get(root, (root,))  # type: ignore[return-value]  # a list is always held

    def roots_of(self, nodes: Iterable[str]) -> set[str]:
        """The roots of many nodes at once (one settle)."""
        self.settle()
        get, find = self._root.get, self._find
        return {get(node) or find(node) for node in nodes}

    def is_root(self, node: str) -> bool:
        return self.root_of(node) == node

    def knows(self, node: str) -> bool:
        return node in self._uf or node in self._components or node in self.links or node in self.merges

    def nodes(self) -> Iterable[str]:
        """Every node a fact has named."""
        seen = set(self._uf)
        seen.update(self._components)
        seen.update(self.links)
        seen.update(self.merges)
        return seen

    # --- data quality ------------------------------------------------------------------

    def link_conflicts(self) -> list[Conflict]:
        """Anonymous ids linked to more than one customer."""
        return _conflicts(self.links, self._linked_twice)

    def merge_conflicts(self) -> list[Conflict]:
        """Customers merged into more than one survivor."""
        return _conflicts(self.merges, self._merged_twice)

    def merge_cycles(self) -> list[MergeCycle]:
        self.settle()
        return sorted(self._cycles.values(), key=lambda cycle: cycle.members)


def _conflicts(table: dict[str, Packed | set[Fact]], several: set[str]) -> list[Conflict]:
    conflicts = []
    for node in several:
        facts = table[node]
        earliest: dict[str, tuple[int, int, str, str]] = {}
        for fact in sorted(facts):
            earliest.setdefault(fact[3], fact)
        if len(earliest) < 2:
            continue
        winner, *losers = earliest.values()
        conflicts.append(Conflict(node, winner, tuple(losers)))
    conflicts.sort(key=lambda conflict: conflict.node)
    return conflicts


def _break_cycles(parent: dict[str, str], merge_edge: dict[str, MergeFact]) -> list[MergeCycle]:
    """Remove, from each cycle of the parent pointers, its latest merge."""
    walked: dict[str, str] = {}
    cycles = []
    for start in list(parent):
        if start in walked:
            continue
        path = []
        node: str | None = start
        while node is not None and node not in walked:
            walked[node] = start
            path.append(node)
            node = parent.get(node)
        if node is not None and walked[node] == start:
            cycle = path[path.index(node) :]
            duplicate = max(cycle, key=merge_edge.__getitem__)
            cycles.append(MergeCycle(tuple(sorted(cycle)), merge_edge[duplicate]))
            del parent[duplicate]
    return cycles


State = IdentityGraph


def initial_state() -> IdentityGraph:
    return IdentityGraph()


def evolve(graph: IdentityGraph, logged: LoggedEvent) -> IdentityGraph:
    """Fold one event; identity events add their fact, others change nothing."""
    kind = logged.event.TYPE
    if kind == "identity_linked":
        graph.add_link(link_fact(logged))
    elif kind == "customers_merged":
        graph.add_merge(merge_fact(logged))
    return graph
