"""The attribution view of every model, maintained from each group's conversion path.

Definition: ``projections.multi_touch.attribution_view`` with its default parameters
(no lookback, no window, ``group_by="channel"``, ``half_life_days=7``). One aggregate
renders all seven models, so they share one set of tallies:

- totals: attributed and unattributed conversions and value;
- the rule-based models (``LABEL_WEIGHTS``): the definition sums, per label, one term
  per distinct label sequence (the sequence's path count and value sum times the
  label's weight), so the paths are tallied per sequence and the credits follow each
  sequence whose tally changed: its old terms out, its new terms in;
- ``time_decay``: one term per touch of every conversion, so each conversion's terms go
  in (and later out) on their own, from the touches' ages kept in its contribution;
- ``markov``: transition counts of the collapsed paths; ``shapley``: paths and
  conversions per set of labels. The prospects' paths count in both.

A change costs O(its path): the tallies are updated at once; the credits of the
sequences and conversions that changed are brought up to date when a document is next
rendered, in one batch (so a burst of changes to a popular sequence costs it once, and
the time-decay weights of a burst take one numpy pass). Every float total is an
``ExactSum``, so the credits equal the definition's ``fsum`` bit for bit; the models'
own code (``projections.attribution``) turns the tallies into credits. Rendering costs
that catching up, plus O(labels) for the rule-based models, the chain's matrix
(O(labels^3)) for Markov and the 2^labels coalitions for Shapley: no walk of the groups.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from projections import parameters
from projections.aggregates.base import ContributionAggregate, ExactSum
from projections.aggregates.interned import InternedValues
from projections.attribution import MODELS
from projections.attribution.heuristic import LABEL_WEIGHTS, decay_weights, sequence_terms
from projections.attribution.markov import State, markov_of_transitions, walk
from projections.attribution.path_counts import Totals, attribution_from_credits, collapse
from projections.attribution.paths import Attribution, Labels
from projections.attribution.shapley import shapley_of_sets
from projections.group import GroupSummary
from projections.multi_touch import attribution_document
from projections.parameters import ViewParameterError
from projections.population import group_path, label_index

HALF_LIFE_DAYS = 7.0
_CHANNEL = label_index("channel")
_PARAMETERS = frozenset({"model", "lookback_days", "start", "end", "group_by", "half_life_days"})
_DECAY_BATCH = 65_536  # conversions waiting for their time-decay credits, at most (a bootstrap's memory)


class PathContribution(NamedTuple):
    """One group's path: its channels, oldest first, and for a conversion its value and
    its touches' ages in days (float64 bytes); a prospect's value is None."""

    labels: Labels
    value: float | None
    ages: bytes


class _SequenceTally:
    """The converting paths with one label sequence, and what the credits hold of them."""

    __slots__ = ("count", "value", "credited")

    def __init__(self) -> None:
        self.count = 0
        self.value = ExactSum()
        self.credited: tuple[int, float] | None = None  # (count, value) whose terms the credits hold


class _Credits:
    """Per label, the exact sums of one model's conversion and value terms."""

    __slots__ = ("_sums",)

    def __init__(self) -> None:
        self._sums: dict[str, tuple[ExactSum, ExactSum]] = {}

    def add(self, label: str, conversion_term: float, value_term: float) -> None:
        sums = self._sums.get(label)
        if sums is None:
            sums = self._sums[label] = (ExactSum(), ExactSum())
        sums[0].add(conversion_term)
        sums[1].add(value_term)

    def subtract(self, label: str, conversion_term: float, value_term: float) -> None:
        conversions, value = self._sums[label]
        conversions.subtract(conversion_term)
        value.subtract(value_term)

    def of(self, labels: Labels) -> dict[str, tuple[float, float]]:
        credits = {}
        for label in labels:
            sums = self._sums.get(label)
            credits[label] = (0.0, 0.0) if sums is None else (sums[0].value, sums[1].value)
        return credits


class MultiTouchAttribution(ContributionAggregate[PathContribution]):
    """Every attribution model's default document, from tallies of the groups' paths."""

    view = "attribution"

    def __init__(self) -> None:
        super().__init__()
        self._conversions = 0
        self._value = ExactSum()
        self._unattributed = 0
        self._unattributed_value = ExactSum()
        self._prospects = 0
        self._converting_labels: Counter[str] = Counter()  # label -> converting paths touching it
        self._labels: Counter[str] = Counter()  # label -> paths (converting or not) touching it
        self._transitions: Counter[tuple[State, State]] = Counter()
        self._paths_by_set: Counter[frozenset[str]] = Counter()
        self._conversions_by_set: Counter[frozenset[str]] = Counter()
        self._sequences: dict[Labels, _SequenceTally] = {}
        self._credits = {model: _Credits() for model in (*LABEL_WEIGHTS, "time_decay")}
        self._changed_sequences: set[Labels] = set()  # whose terms the credits do not hold yet
        self._decay_pending: list[tuple[int, PathContribution]] = []  # (sign, conversion) not yet credited
        self._interned: InternedValues[Labels] = InternedValues()
        self._prospect_paths: InternedValues[PathContribution] = InternedValues()  # few distinct among many

    def to_plain(self, held: PathContribution) -> tuple:
        return tuple(held)

    def from_plain(self, plain: tuple) -> PathContribution:
        return PathContribution(*plain)

    def contribution(self, group: GroupSummary) -> PathContribution | None:
        if not group.orders and not group.touches:
            return None
        path = group_path(group, _CHANNEL, None)
        labels = self._interned.get(tuple(label for label, _ in path.touches))
        if not path.converted:
            return self._prospect_paths.get(PathContribution(labels, None, b""))
        return PathContribution(labels, path.value, array("d", [age for _, age in path.touches]).tobytes())

    def add(self, contribution: PathContribution) -> None:
        self._interned.add(contribution.labels)
        if contribution.value is None:
            self._prospect_paths.add(contribution)
        self._count(contribution, 1)

    def subtract(self, contribution: PathContribution) -> None:
        self._interned.remove(contribution.labels)
        if contribution.value is None:
            self._prospect_paths.remove(contribution)
        self._count(contribution, -1)

    def _count(self, contribution: PathContribution, sign: int) -> None:
        labels, value, _ = contribution
        converted = value is not None
        if converted and not labels:
            self._unattributed += sign
            _apply(self._unattributed_value, value, sign)
            return
        labels_touched = frozenset(labels)
        if converted:
            self._conversions += sign
            _apply(self._value, value, sign)
            self._count_sequence(labels, value, sign)
            self._decay_pending.append((sign, contribution))
            if len(self._decay_pending) >= _DECAY_BATCH:
                self._credit_decay()
            _tally(self._conversions_by_set, labels_touched, sign)
            for label in labels_touched:
                _tally(self._converting_labels, label, sign)
        else:
            self._prospects += sign
        for transition in walk(collapse(labels), converted=converted):
            _tally(self._transitions, transition, sign)
        _tally(self._paths_by_set, labels_touched, sign)
        for label in labels_touched:
            _tally(self._labels, label, sign)

    def _count_sequence(self, labels: Labels, value: float, sign: int) -> None:
        tally = self._sequences.get(labels)
        if tally is None:
            tally = self._sequences[labels] = _SequenceTally()
        tally.count += sign
        _apply(tally.value, value, sign)
        self._changed_sequences.add(labels)

    # --- rendering -----------------------------------------------------------------------

    def answers(self, params: Mapping[str, Any]) -> bool:
        if not set(params) <= _PARAMETERS or params.get("model") not in MODELS:
            return False
        if any(params.get(name) is not None for name in ("lookback_days", "start", "end")):
            return False
        if params.get("group_by", "channel") != "channel":
            return False
        try:
            half_life = parameters.positive_days("half_life_days", params.get("half_life_days", 7.0), optional=False)
        except ViewParameterError:
            return False
        return params["model"] != "time_decay" or half_life == HALF_LIFE_DAYS

    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        return attribution_document(
            self.result(params["model"]),
            lookback_days=None,
            group_by="channel",
            start=None,
            end=None,
            half_life_days=HALF_LIFE_DAYS,
            non_converting_paths=self._prospects,
        )

    def result(self, model: str) -> Attribution:
        """The credits of ``model`` over the maintained paths."""
        if model == "markov":
            return markov_of_transitions(self._totals(self._labels), self._transitions)
        if model == "shapley":
            return shapley_of_sets(self._totals(self._labels), self._paths_by_set, self._conversions_by_set)
        self._credit_sequences()
        self._credit_decay()
        totals = self._totals(self._converting_labels)
        return attribution_from_credits(model, totals, self._credits[model].of(totals.labels))

    def _totals(self, labels: Counter[str]) -> Totals:
        return Totals(
            labels=tuple(sorted(labels)),
            conversions=self._conversions,
            value=self._value.value,
            unattributed_conversions=self._unattributed,
            unattributed_value=self._unattributed_value.value,
        )

    def _credit_sequences(self) -> None:
        """The rule-based credits: each changed sequence's old terms out, its new terms in."""
        for labels in self._changed_sequences:
            tally = self._sequences[labels]
            current = (tally.count, tally.value.value) if tally.count else None
            if current != tally.credited:
                for model in LABEL_WEIGHTS:
                    credits = self._credits[model]
                    if tally.credited is not None:
                        for term in sequence_terms(model, labels, *tally.credited):
                            credits.subtract(*term)
                    if current is not None:
                        for term in sequence_terms(model, labels, *current):
                            credits.add(*term)
                tally.credited = current
            if current is None:
                del self._sequences[labels]
        self._changed_sequences.clear()

    def _credit_decay(self) -> None:
        """The time-decay credits of the conversions added and removed since: one batch."""
        pending = self._decay_pending
        if not pending:
            return
        lengths = np.fromiter((len(path.labels) for _, path in pending), dtype=np.intp, count=len(pending))
        ages = np.frombuffer(b"".join(path.ages for _, path in pending))
        weights = iter(decay_weights(lengths, ages, HALF_LIFE_DAYS).tolist())
        credits = self._credits["time_decay"]
        for sign, (labels, value, _) in pending:
            change = credits.add if sign > 0 else credits.subtract
            for label, weight in zip(labels, weights):
                change(label, weight, weight * value)
        pending.clear()


def _tally(counter: Counter, key: Any, sign: int) -> None:
    """Count ``key`` once more (or less); a count that reaches zero is removed."""
    count = counter[key] + sign
    if count:
        counter[key] = count
    else:
        del counter[key]


def _apply(total: ExactSum, value: float, sign: int) -> None:
    if sign > 0:
        total.add(value)
    else:
        total.subtract(value)
