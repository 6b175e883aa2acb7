"""Attribution with any parameters, answered from every group's path held in numpy columns.

Definition: ``projections.multi_touch.attribution_view`` with any parameters: a lookback
(``lookback_days``), a window (``from``/``to``), ``group_by`` channel, campaign or source,
``half_life_days``. The default document is maintained by ``aggregates.attribution``
(registered first); this aggregate answers the rest.

Each group with an order or a touch keeps one row at its slot: whether its path converts, the time
its path ends (``population.path_end``: the first order, else the last touch), its value,
and its path's touches (time, and for each labelling the ``SuffixTrie`` node of the
sequence from that touch on). The row and its touches are the group's contribution
(packed); a changed group's is compared with the columns themselves (a node's first label
is the touch's label), not with a kept copy (~220 bytes a group). A query then:

1. selects the rows whose end falls in the window (conversions; prospects too for the
   models that read them), all in numpy;
2. applies the lookback: the touches older than ``end - lookback`` are a prefix of each
   path, counted with one comparison over the selected touches; the node of the first
   kept touch names the path's label sequence;
3. tallies paths per sequence (count, and ``fsum`` of the values as the definition's
   ``fold_paths`` does) and hands them to the models' own code
   (``projections.attribution``): ``label_attribution``, ``decay_terms`` over the
   kept touches' ages (what ``decay_attribution`` fsums), ``markov_of_transitions``,
   ``shapley_of_sets``.

So a query costs a few vectorised passes over the rows plus Python work per distinct
label sequence, not per group. The lookback and time decay read the touches of
``paths_a_chunk`` (8,192) paths at a time, time decay keeping only each touch's two
terms, and sums go to ``math.fsum`` as memoryviews of the numpy columns, not lists: a
query's temporaries were ~20 bytes a touch read and a Python float a touch (~130 MiB at a
million customers); ``fsum`` of 4M floats took 0.05 s from a memoryview, 0.33 s as
``tolist()`` then ``fsum``. The paths' columns are copied once per kind of path (converting,
unattributed, prospect), and counted without ``np.unique``'s sorted copies. Measured with
tracemalloc at 100,000 customers (one-year window, 30-day lookback), the peak of linear /
time decay / Markov / Shapley: 4.0 / 7.5 / 8.7 / 8.7 MiB before, 2.7 / 3.7 / 3.7 / 3.7
after, the times the same (38–68 ms). Changes cost O(path) (slots and touch runs are
reused; the runs are compacted when half of them is garbage).
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Mapping
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from events.times import to_micros
from projections import parameters
from projections.aggregates.columns import MIN_MICROS, PackedRowAggregate, Runs, SlotRows, SuffixTrie, ranges
from projections.attribution import MODELS
from projections.attribution.heuristic import decay_terms, label_attribution
from projections.attribution.markov import markov_of_transitions, sequence_transitions
from projections.attribution.path_counts import Totals, attribution_from_terms
from projections.attribution.paths import Attribution, Labels
from projections.attribution.shapley import channel_set_counts, shapley_of_sets
from projections.group import GroupSummary
from projections.multi_touch import READS_NON_CONVERTING, attribution_document
from projections.parameters import ViewParameterError
from projections.population import GROUP_BY, NO_LABEL, path_end

_PARAMETERS = frozenset({"model", "lookback_days", "start", "end", "group_by", "half_life_days"})
_HEADER = struct.Struct("<?qd")  # converted, end of the path (µs), value
_RUN = struct.Struct("<qi")  # where the row's touches start in the runs, and how many
_FIELDS = [("converted", "?"), ("at", "<i8"), ("value", "<f8"), ("start", "<i8"), ("length", "<i4")]  # _HEADER, _RUN
_DAY_MICROS = 86_400_000_000
_TOUCH_BYTES = 20  # a touch in a row: its time (8), then its channel, campaign and source codes (4 each)


class Query(NamedTuple):
    """The parameters of one attribution query, checked as the definition checks them."""

    model: str
    lookback_days: float | None
    half_life_days: float
    group_by: str
    start: datetime | None
    end: datetime | None

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> "Query":
        model = parameters.choice("model", params.get("model"), MODELS)
        lookback = parameters.positive_days("lookback_days", params.get("lookback_days"))
        half_life = parameters.positive_days("half_life_days", params.get("half_life_days", 7.0), optional=False)
        group_by = parameters.choice("group_by", params.get("group_by", "channel"), GROUP_BY)
        lower, upper = parameters.window(params.get("start"), params.get("end"))
        return cls(model, lookback, half_life, group_by, lower, upper)


def _counted(values: np.ndarray, *, already_sorted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_counts=True)``, without its copies of ``values`` when they
    are sorted already (a sorted copy and an argsort of it: 16 bytes a path)."""
    if not already_sorted:
        values = np.sort(values)
    if not len(values):
        return values, np.zeros(0, dtype=np.intp)
    firsts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    return values[firsts], np.diff(firsts, append=len(values))


class _Paths(NamedTuple):
    """The selected paths as columns (touch runs cut by the lookback)."""

    converted: np.ndarray
    at: np.ndarray
    values: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    sequences: np.ndarray  # the trie node of each path's label sequence (0: no touch)


class AttributionQueries(PackedRowAggregate):
    """Every attribution document, from the paths' rows: the queries with parameters."""

    view = "attribution"

    def __init__(self, *, compact_above: int = 65_536, paths_a_chunk: int = 8_192) -> None:
        """``compact_above``: how many released touches (and dead trie nodes) are worth
        a compaction, at least; ``paths_a_chunk``: how many paths' touches a query reads at once."""
        self._compact_above = compact_above
        self._paths_a_chunk = paths_a_chunk
        self._trie = SuffixTrie()
        self._rows = SlotRows(_FIELDS)
        self._touches = Runs(
            {"at": np.int64, "channel": np.int32, "campaign": np.int32, "source": np.int32}, compact_above=compact_above
        )

    def contribution(self, group: GroupSummary) -> bytes | None:
        """The row, packed: header, then the path's touch times, channel, campaign and source codes."""
        if not group.orders and not group.touches:
            return None
        converted, cut, at, value = path_end(group)
        touches = group.touches[:cut]
        code = self._trie.labels.code
        return b"".join((
            _HEADER.pack(converted, to_micros(at), value),
            array("q", [to_micros(touch[0]) for touch in touches]).tobytes(),
            array("i", [code(touch[2]) for touch in touches]).tobytes(),
            array("i", [code(touch[3] or NO_LABEL) for touch in touches]).tobytes(),
            array("i", [code(touch[5] or NO_LABEL) for touch in touches]).tobytes(),
        ))

    def holds(self, slot: int, contribution: bytes) -> bool:
        """Compared part by part with what the columns hold at ``slot``, cheapest first."""
        rows, header = self._rows, _HEADER.size
        if not rows.starts_with(slot, contribution[:header]):
            return False
        start, n = rows.fields(slot, _RUN, header)
        if len(contribution) != header + _TOUCH_BYTES * n:
            return False
        end, labels_from = start + n, header + 8 * n
        touches = self._touches
        if touches.column("at")[start:end].tobytes() != contribution[header:labels_from]:
            return False
        codes, label_code = memoryview(contribution)[labels_from:].cast("i"), self._trie.label_code
        at = 0
        for group_by in GROUP_BY:  # a few touches: a Python loop beats numpy's calls
            for node in touches.column(group_by)[start:end].tolist():
                if label_code[node] != codes[at]:
                    return False
                at += 1
        return True

    def _put(self, slot: int, contribution: bytes) -> None:
        n = (len(contribution) - _HEADER.size) // _TOUCH_BYTES
        channels = _HEADER.size + 8 * n
        campaigns = channels + 4 * n
        sources = campaigns + 4 * n
        suffixes = self._trie.suffix_bytes
        start = self._touches.append(
            at=np.frombuffer(contribution, np.int64, n, _HEADER.size),
            channel=np.frombuffer(suffixes(contribution[channels:campaigns]), np.int32),
            campaign=np.frombuffer(suffixes(contribution[campaigns:sources]), np.int32),
            source=np.frombuffer(suffixes(contribution[sources:]), np.int32),
        )
        self._rows.put(slot, contribution[: _HEADER.size] + _RUN.pack(start, n))

    def _clear(self, slot: int) -> None:
        self._rows.clear(slot)
        self._touches.release(self._rows.fields(slot, _RUN, _HEADER.size)[1])
        if self._touches.needs_compacting():
            self._compact()

    def _compact(self) -> None:
        """Drop the released touch runs, and the trie's nodes no path holds any more."""
        rows, touches = self._rows, self._touches
        slots = np.flatnonzero(rows.live)
        starts = rows.column("start")
        starts[slots] = touches.compact(starts[slots], rows.column("length")[slots])
        labellings = [touches.column(group_by) for group_by in GROUP_BY]
        held = np.bincount(np.concatenate(labellings), minlength=len(self._trie)) > 0
        if len(self._trie) > 2 * np.count_nonzero(held) + self._compact_above:  # mostly nodes no path holds
            self._trie, renumbered = self._trie.compacted(np.flatnonzero(held))
            for nodes in labellings:
                nodes[:] = renumbered[nodes]

    # --- rendering -----------------------------------------------------------------------

    def answers(self, params: Mapping[str, Any]) -> bool:
        if not set(params) <= _PARAMETERS:
            return False
        try:
            query = Query.of(params)
            if query.lookback_days is not None:
                timedelta(days=query.lookback_days)  # the definition's lookback, which may overflow
        except (ViewParameterError, OverflowError):
            return False
        return True

    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        query = Query.of(params)
        result, prospects = self.result(query)
        return attribution_document(
            result,
            lookback_days=query.lookback_days,
            group_by=query.group_by,
            start=query.start,
            end=query.end,
            half_life_days=query.half_life_days,
            non_converting_paths=prospects,
        )

    def result(self, query: Query) -> tuple[Attribution, int]:
        """The model's credits over the selected paths, and how many prospects' paths it read."""
        reads_all = query.model in READS_NON_CONVERTING
        paths = self._paths(query, prospects=reads_all)
        converting = paths.converted
        # one mask and one copy of each column per kind of path: a query's temporaries are
        # what a million customers' views are measured against (issue 14's 1.5 GiB)
        attributed = paths.sequences != 0
        attributed &= converting
        unattributed = ~attributed
        unattributed &= converting
        values = paths.values[attributed]
        converting_counts = self._tally(paths.sequences[attributed], values)
        non_converting: dict[Labels, int] = {}
        if reads_all:
            nodes, counts = _counted(paths.sequences[~converting])
            non_converting = {self._trie.sequence(n): c for n, c in zip(nodes.tolist(), counts.tolist())}
        labels = set(chain.from_iterable(converting_counts))
        labels.update(chain.from_iterable(non_converting))
        unattributed_values = paths.values[unattributed]
        totals = Totals(
            labels=tuple(sorted(labels)),
            conversions=len(values),
            value=math.fsum(memoryview(values)),
            unattributed_conversions=len(unattributed_values),
            unattributed_value=math.fsum(memoryview(unattributed_values)),
        )
        del values, unattributed, unattributed_values
        prospects = int(len(paths.sequences) - np.count_nonzero(converting))
        if query.model == "markov":
            return markov_of_transitions(totals, sequence_transitions(converting_counts, non_converting)), prospects
        if query.model == "shapley":
            return shapley_of_sets(totals, *channel_set_counts(converting_counts, non_converting)), prospects
        if query.model == "time_decay":
            return self._time_decay(totals, paths, np.flatnonzero(attributed), query), prospects
        return label_attribution(query.model, totals, converting_counts), prospects

    def _paths(self, query: Query, *, prospects: bool) -> _Paths:
        rows = self._rows
        at = rows.column("at")
        selected = rows.live if prospects else rows.live & rows.column("converted")
        if query.start is not None:
            selected = selected & (at >= to_micros(query.start))
        if query.end is not None:
            selected = selected & (at < to_micros(query.end))
        slots = np.flatnonzero(selected)
        at = at[slots]
        starts, lengths = rows.column("start")[slots], rows.column("length")[slots]
        if query.lookback_days is not None:
            window = timedelta(days=query.lookback_days) // timedelta(microseconds=1)
            if len(at) and int(at.min()) - window < MIN_MICROS:
                raise OverflowError("date value out of range")  # as the definition's datetimes
            dropped = self._older_than(at - window, starts, lengths)
            starts += dropped  # copies of the columns: changed in place
            lengths -= dropped
            del dropped
        # the node of each path's first kept touch (0: none kept); a path with none kept may
        # start past the last touch, so the look-up is clipped and then zeroed
        labelled = self._touches.column(query.group_by)
        sequences = labelled.take(starts, mode="clip") if len(labelled) else np.zeros(len(starts), labelled.dtype)
        sequences[lengths == 0] = 0
        return _Paths(rows.column("converted")[slots], at, rows.column("value")[slots], starts, lengths, sequences)

    def _older_than(self, limits: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """How many touches of each run are older than its limit (a prefix: runs are in time
        order). A chunk of runs at a time, so the touches' temporaries stay a few MiB
        however many paths a query reads (all at once they were ~20 bytes a touch)."""
        touch_at = self._touches.column("at")
        dropped = np.zeros(len(starts), dtype=lengths.dtype)
        for first in range(0, len(starts), self._paths_a_chunk):
            chunk = slice(first, first + self._paths_a_chunk)
            runs = lengths[chunk]
            older = touch_at[ranges(starts[chunk], runs)] < np.repeat(limits[chunk], runs)
            counted = np.concatenate(([0], np.cumsum(older)))  # [k]: older touches among the first k
            dropped[chunk] = np.diff(counted[np.cumsum(runs)], prepend=0)
        return dropped

    def _tally(self, sequences: np.ndarray, values: np.ndarray) -> dict[Labels, tuple[int, float]]:
        """Converting paths per label sequence: (paths, fsum of their values)."""
        order = np.argsort(sequences, kind="stable")
        ordered = memoryview(values[order])  # fsum reads a memoryview's floats as fast as a list's
        nodes, counts = _counted(sequences[order], already_sorted=True)
        del order
        firsts = np.cumsum(counts) - counts
        sequence = self._trie.sequence
        return {
            sequence(node): (count, math.fsum(ordered[first : first + count]))
            for node, first, count in zip(nodes.tolist(), firsts.tolist(), counts.tolist())
        }

    def _time_decay(self, totals: Totals, paths: _Paths, chosen: np.ndarray, query: Query) -> Attribution:
        """The kept touches of the attributed conversions ``chosen``, weighed by age,
        ``paths_a_chunk`` conversions at a time: only the terms are held for all of them
        (two floats a touch), not the ages, labels, weights and sorts of every touch."""
        index_of = np.zeros(len(self._trie.labels), dtype=np.intp)
        code = self._trie.labels.code
        index_of[[code(label) for label in totals.labels]] = np.arange(len(totals.labels))
        touch_at, touch_labels = self._touches.column("at"), self._touches.column(query.group_by)
        conversion_terms: dict[int, list[memoryview]] = {}
        value_terms: dict[int, list[memoryview]] = {}
        for first in range(0, len(chosen), self._paths_a_chunk):
            some = chosen[first : first + self._paths_a_chunk]
            lengths = paths.lengths[some]
            touches = ranges(paths.starts[some], lengths)
            ages = (np.repeat(paths.at[some], lengths) - touch_at[touches]) / _DAY_MICROS
            label_of = index_of[self._trie.label_codes(touch_labels[touches])]
            terms = decay_terms(lengths, ages, label_of, paths.values[some], query.half_life_days, len(totals.labels))
            for i, (conversions, value) in terms.items():
                conversion_terms.setdefault(i, []).append(conversions)
                value_terms.setdefault(i, []).append(value)
        labels = totals.labels
        return attribution_from_terms("time_decay", totals, {
            labels[i]: (chain.from_iterable(conversion_terms[i]), chain.from_iterable(value_terms[i]))  # type: ignore[misc]
            for i in conversion_terms
        })

    def nbytes(self) -> int:
        """The columns' bytes (the contributions and the trie aside)."""
        return self._rows.nbytes() + self._touches.nbytes()

