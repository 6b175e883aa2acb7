"""The top paths view, maintained from each group's collapsed path.

Definition: ``projections.top_paths.paths_view`` with repeats collapsed, no lookback, no
window and ``group_by="channel"`` (any ``top``). Converting paths are tallied per label
sequence (count, exact value sum) and kept ranked in the definition's order
(``top_paths.ranking``); non-converting paths likewise. A change updates its sequence's
tally; the next render moves each sequence that changed since to its new place in the
ranking (a binary search and a list shift; a burst of changes to one sequence moves it
once) and reads the first ``top`` rows: no walk of the groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from projections import parameters
from projections.aggregates.base import ContributionAggregate, ExactSum, SortedValues
from projections.aggregates.interned import InternedValues
from projections.attribution.path_counts import collapse
from projections.attribution.paths import Labels
from projections.group import GroupSummary
from projections.parameters import ViewParameterError
from projections.population import group_path, label_index
from projections.top_paths import non_converting_ranking, paths_document, ranking

_CHANNEL = label_index("channel")
_PARAMETERS = frozenset({"top", "collapse_repeats", "lookback_days", "group_by", "start", "end"})


class CollapsedPath(NamedTuple):
    """One group's channels with repeats collapsed, and its conversion value (None: a prospect)."""

    labels: Labels
    value: float | None


class _Tally:
    """The paths with one sequence: how many, their value (converting paths), and the key
    they are ranked by."""

    __slots__ = ("count", "value", "key")

    def __init__(self) -> None:
        self.count = 0
        self.value = ExactSum()
        self.key: tuple | None = None  # where the ranking holds them; None: not ranked


class TopPaths(ContributionAggregate[CollapsedPath]):
    """The default paths document, from ranked tallies of the groups' collapsed paths."""

    view = "paths"

    def __init__(self) -> None:
        super().__init__()
        self._conversions = 0
        self._unattributed = 0
        self._prospects = 0
        self._converting: dict[Labels, _Tally] = {}
        self._non_converting: dict[Labels, _Tally] = {}
        self._ranked = SortedValues()  # ranking keys of the converting sequences
        self._ranked_non_converting = SortedValues()
        self._changed: set[Labels] = set()  # converting sequences not ranked by their current tally
        self._changed_non_converting: set[Labels] = set()
        self._interned: InternedValues[Labels] = InternedValues()
        self._prospect_paths: InternedValues[CollapsedPath] = InternedValues()  # few distinct among many

    def to_plain(self, held: CollapsedPath) -> tuple:
        return tuple(held)

    def from_plain(self, plain: tuple) -> CollapsedPath:
        return CollapsedPath(*plain)

    def contribution(self, group: GroupSummary) -> CollapsedPath | None:
        if not group.orders and not group.touches:
            return None
        path = group_path(group, _CHANNEL, None)
        labels = self._interned.get(collapse(tuple(label for label, _ in path.touches)))
        if not path.converted:
            return self._prospect_paths.get(CollapsedPath(labels, None))
        return CollapsedPath(labels, path.value)

    def add(self, contribution: CollapsedPath) -> None:
        self._interned.add(contribution.labels)
        if contribution.value is None:
            self._prospect_paths.add(contribution)
        self._count(contribution, 1)

    def subtract(self, contribution: CollapsedPath) -> None:
        self._interned.remove(contribution.labels)
        if contribution.value is None:
            self._prospect_paths.remove(contribution)
        self._count(contribution, -1)

    def _count(self, contribution: CollapsedPath, sign: int) -> None:
        labels, value = contribution
        if value is None:
            self._prospects += sign
            _tally(self._non_converting, labels).count += sign
            self._changed_non_converting.add(labels)
        elif labels:
            self._conversions += sign
            tally = _tally(self._converting, labels)
            tally.count += sign
            if sign > 0:
                tally.value.add(value)
            else:
                tally.value.subtract(value)
            self._changed.add(labels)
        else:
            self._unattributed += sign

    def _rank(self) -> None:
        """Move the sequences that changed to their place in the rankings."""
        for labels in self._changed:
            tally = self._converting[labels]
            key = ranking((labels, tally.count, tally.value.value)) if tally.count else None
            _rerank(self._converting, labels, self._ranked, key)
        self._changed.clear()
        for labels in self._changed_non_converting:
            tally = self._non_converting[labels]
            key = non_converting_ranking((labels, tally.count)) if tally.count else None
            _rerank(self._non_converting, labels, self._ranked_non_converting, key)
        self._changed_non_converting.clear()

    # --- rendering -----------------------------------------------------------------------

    def answers(self, params: Mapping[str, Any]) -> bool:
        if not set(params) <= _PARAMETERS:
            return False
        if any(params.get(name) is not None for name in ("lookback_days", "start", "end")):
            return False
        if params.get("group_by", "channel") != "channel":
            return False
        try:
            parameters.positive_int("top", params.get("top", 20))
            return parameters.flag("collapse_repeats", params.get("collapse_repeats", True))
        except ViewParameterError:
            return False

    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        top = parameters.positive_int("top", params.get("top", 20))
        self._rank()
        return paths_document(
            group_by="channel",
            collapse_repeats=True,
            lookback_days=None,
            start=None,
            end=None,
            top=top,
            conversions=self._conversions,
            unattributed_conversions=self._unattributed,
            distinct_paths=len(self._converting),
            ranked=[(labels, -count, -value) for count, value, labels in self._ranked.values[:top]],
            prospects=self._prospects,
            distinct_non_converting=len(self._non_converting),
            ranked_non_converting=[(labels, -count) for count, labels in self._ranked_non_converting.values[:top]],
        )


def _rerank(tallies: dict[Labels, _Tally], labels: Labels, ranked: SortedValues, key: tuple | None) -> None:
    """Rank ``labels`` by ``key`` (None: no paths left, forget the sequence)."""
    tally = tallies[labels]
    if tally.key is not None:
        ranked.remove(tally.key)
    if key is not None:
        tally.key = key
        ranked.add(key)
    else:
        del tallies[labels]


def _tally(tallies: dict[Labels, _Tally], labels: Labels) -> _Tally:
    tally = tallies.get(labels)
    if tally is None:
        tally = tallies[labels] = _Tally()
    return tally
