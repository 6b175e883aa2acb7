"""The group summaries of a population, and what queries derive from them: kept beside it.

Not projection state: the fold only marks the identities it changed (``stale``); the first
query after a change summarises again just the groups those identities, and the roots the
identity graph reports as changed, belong to, and forgets the results derived from the old
summaries. Nothing here is compared, and all of it can be rebuilt from the population at any
time (a saved views state keeps it as it is: ``application.view_state``). Not thread-safe:
the shell serialises folds and queries.

Maintained views (``projections.aggregates``), once attached with ``maintain``, get every
group a refresh summarises again, so they change with the groups that changed.

With ``keep`` given, only that many of the summaries last made or asked for are kept (a
population whose journeys are not in memory keeps their facts out of it too): ``group``
summarises a group not kept again, and ``groups`` summarises every group for the caller
without keeping them (the definitions' walk; the maintained views need no summary kept).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from projections.group import GroupSummary, summarize
from projections.identity import IdentityGraph
from projections.journey import IdentityJourney

if TYPE_CHECKING:  # the aggregates import the views, which import the population: no runtime import
    from projections.aggregates import MaintainedViews

T = TypeVar("T")


class GroupCache:
    """Summaries by root, the ordered list of them, and derived results (paths, scores)."""

    __slots__ = (
        "stale", "_journeys", "_graph", "_summaries", "_ordered", "_results", "_group_results", "_maintained",
        "_keep",
    )

    def __init__(self, journeys: Mapping[str, IdentityJourney], graph: IdentityGraph, *, keep: int | None = None):
        self.stale: set[str] = set()  # identity keys changed by the fold since the last refresh
        self._journeys = journeys
        self._graph = graph
        self._keep = keep  # None: every summary is kept
        self._summaries: dict[str, GroupSummary] = {} if keep is None else OrderedDict()  # recent last
        self._ordered: list[GroupSummary] | None = None
        self._results: dict[Any, Any] = {}
        self._group_results: dict[str, dict[Any, Any]] = {}  # root -> results derived from that group alone
        self._maintained: MaintainedViews | None = None

    def refresh(self) -> None:
        """Summarise the groups that changed since the last query."""
        changed_roots = self._graph.take_changed_roots()
        if not self.stale and not changed_roots:
            return
        graph, summaries, group_results = self._graph, self._summaries, self._group_results
        roots = changed_roots | graph.roots_of(self.stale)
        self.stale.clear()
        maintained = self._maintained
        for root in roots:
            group_results.pop(root, None)
            summary = self._summarize(root)
            if summary is not None:
                self._keep_summary(root, summary)
            else:
                summaries.pop(root, None)
            if maintained is not None:
                maintained.update(root, summary)
        self._ordered = None
        self._results.clear()

    def _summarize(self, root: str) -> GroupSummary | None:
        """The group ``root`` heads, summarised from its members' journeys (None: no journey)."""
        graph, journeys = self._graph, self._journeys
        members = graph.members(root) if graph.is_root(root) else ()
        found = {}  # one read per member: the journeys may be kept on disk
        for member in members:
            journey = journeys.get(member)
            if journey is not None:
                found[member] = journey
        return summarize(root, members, found) if found else None

    def _keep_summary(self, root: str, summary: GroupSummary) -> None:
        summaries = self._summaries
        summaries[root] = summary
        if self._keep is not None:
            summaries.move_to_end(root)  # type: ignore[attr-defined]
            if len(summaries) > self._keep:
                summaries.popitem(last=False)  # type: ignore[call-arg]

    def _every_group(self) -> list[GroupSummary]:
        """Every group in root order, each summarised from its journeys (for ``keep``)."""
        roots = sorted(self._graph.roots_of(list(self._journeys)))
        return [summary for root in roots if (summary := self._summarize(root)) is not None]

    def maintain(self, views: MaintainedViews) -> MaintainedViews:
        """Keep ``views`` current from now on, starting from every group there is."""
        self.refresh()
        for summary in self._summaries.values() if self._keep is None else self._every_group():
            views.update(summary.root, summary)
        self._maintained = views
        return views

    @property
    def maintained(self) -> MaintainedViews | None:
        """The maintained views, current as of the last ``refresh``."""
        return self._maintained

    def groups(self) -> list[GroupSummary]:
        """Every group, ordered by root (so float sums over them are reproducible)."""
        self.refresh()
        if self._keep is not None:
            return self._every_group()  # not kept: it would hold every group's facts
        if self._ordered is None:
            self._ordered = [self._summaries[root] for root in sorted(self._summaries)]
        return self._ordered

    def group(self, root: str) -> GroupSummary | None:
        """The summary of the group ``root`` heads: valid until the population next changes."""
        self.refresh()
        summary = self._summaries.get(root)
        if summary is None and self._keep is not None and self._graph.is_root(root):
            summary = self._summarize(root)
            if summary is not None:
                self._keep_summary(root, summary)
        elif summary is not None and self._keep is not None:
            self._summaries.move_to_end(root)  # type: ignore[attr-defined]
        return summary

    def cached(self, key: Any, compute: Callable[[], T]) -> T:
        """A result derived from every group, kept until the population next changes."""
        self.refresh()
        results = self._results
        if key not in results:
            results[key] = compute()
        return results[key]

    def results_of(self, root: str) -> dict[Any, Any]:
        """Where to keep results derived from the group ``root`` alone: emptied when that
        group changes (with ``keep``, nowhere: a new dict each time)."""
        if self._keep is not None:
            return {}
        results = self._group_results.get(root)
        if results is None:
            results = self._group_results[root] = {}
        return results
