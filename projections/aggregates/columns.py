"""Per-group rows held in numpy columns, for the views' queries with parameters.

A query with a window or a lookback cannot be maintained as a running total (its answer
depends on the parameters), but it need not walk a Python object per group either: each
group keeps one compact row in numpy columns, and a query filters and groups the columns
in a few vectorised passes.

- ``SlotRows``: fixed-width rows, one slot per group, in slot-indexed columns. A freed
  slot is reused by the next row, so the columns stay as long as the largest population.
  A row is found again by its key (the group's contribution: all an aggregate's
  ``subtract`` is given); equal keys (two groups with identical rows) share a chain of
  slots.
- ``Runs``: a variable-length run of items per row (a path's touches), flattened into
  columns; a released run is garbage until the runs are compacted (amortised O(1)).
- ``Interned``: strings as dense integer codes; ``SuffixTrie``: label sequences as node
  ids, one per suffix, so a path cut by a lookback (its oldest touches dropped) is
  identified by the node of its first kept touch.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime, timezone

import numpy as np

from events.times import to_micros
from projections.attribution.paths import Labels

MIN_MICROS = to_micros(datetime.min.replace(tzinfo=timezone.utc))  # the earliest time a datetime holds
_SUFFIXES_KEPT = 8192  # label sequences whose suffix nodes are kept at hand
_SEQUENCES_KEPT = 65_536  # nodes whose label tuples are kept at hand


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indexes ``starts[i] .. starts[i] + lengths[i] - 1`` of every run, concatenated."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total)


def _grown(column: np.ndarray, size: int) -> np.ndarray:
    grown = np.zeros(max(size, len(column) + len(column) // 2), dtype=column.dtype)  # amortised O(1) appends
    grown[: len(column)] = column
    return grown


class SlotRows:
    """Fixed-width rows in numpy columns, one slot per key (a multiset of keys)."""

    __slots__ = ("_columns", "_live", "_same", "_free", "_end", "_slot_of")

    def __init__(self, dtypes: Mapping[str, type]):
        self._columns = {name: np.zeros(1024, dtype=dtype) for name, dtype in dtypes.items()}
        self._live = np.zeros(1024, dtype=bool)
        self._same = np.full(1024, -1, dtype=np.int32)  # the next slot holding an equal key
        self._free: list[int] = []
        self._end = 0  # slots ever used: [0, end)
        self._slot_of: dict[Hashable, int] = {}

    def add(self, key: Hashable, **values: object) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            slot = self._end
            self._end += 1
            if slot == len(self._live):
                self._live = _grown(self._live, slot + 1)
                self._same = _grown(self._same, slot + 1)
                for name, column in self._columns.items():
                    self._columns[name] = _grown(column, slot + 1)
        for name, value in values.items():
            self._columns[name][slot] = value
        self._live[slot] = True
        self._same[slot] = self._slot_of.get(key, -1)
        self._slot_of[key] = slot
        return slot

    def remove(self, key: Hashable) -> int:
        """Free a slot holding ``key`` (KeyError if none does) and return it."""
        slot = self._slot_of[key]
        following = int(self._same[slot])
        if following < 0:
            del self._slot_of[key]
        else:
            self._slot_of[key] = following
        self._live[slot] = False
        self._free.append(slot)
        return slot

    def column(self, name: str) -> np.ndarray:
        """A view of the column over the used slots (free slots hold stale values)."""
        return self._columns[name][: self._end]

    @property
    def live(self) -> np.ndarray:
        """Which used slots hold a row."""
        return self._live[: self._end]

    def __len__(self) -> int:
        return self._end - len(self._free)

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._columns.values()) + self._live.nbytes + self._same.nbytes


class Runs:
    """Variable-length runs of items in flat numpy columns, appended at the end."""

    __slots__ = ("_columns", "_end", "garbage", "_compact_above")

    def __init__(self, dtypes: Mapping[str, type], *, compact_above: int = 65_536):
        self._columns = {name: np.zeros(4096, dtype=dtype) for name, dtype in dtypes.items()}
        self._end = 0
        self.garbage = 0  # items of released runs still in the columns
        self._compact_above = compact_above  # garbage items worth a compaction, at least

    def append(self, **items: np.ndarray) -> int:
        """Append one run (equal-length arrays, one per column); return where it starts."""
        start = self._end
        length = len(next(iter(items.values())))
        self._end = end = start + length
        for name, values in items.items():
            column = self._columns[name]
            if end > len(column):
                column = self._columns[name] = _grown(column, end)
            column[start:end] = values
        return start

    def release(self, length: int) -> None:
        self.garbage += length

    def needs_compacting(self) -> bool:
        return self.garbage > self._compact_above and 2 * self.garbage > self._end

    def compact(self, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Keep only the runs at ``starts`` (of ``lengths``), in that order; return their new starts."""
        kept = ranges(starts, lengths)
        for name, column in self._columns.items():
            compacted = self._columns[name] = np.zeros(max(4096, len(kept) + len(kept) // 4), dtype=column.dtype)
            compacted[: len(kept)] = column[kept]
        self._end = len(kept)
        self.garbage = 0
        return np.cumsum(lengths) - lengths

    def column(self, name: str) -> np.ndarray:
        return self._columns[name][: self._end]

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._columns.values())


class Interned:
    """Strings as dense integer codes (never released: labels are few)."""

    __slots__ = ("_code", "strings")

    def __init__(self) -> None:
        self._code: dict[str, int] = {}
        self.strings: list[str] = []

    def code(self, string: str) -> int:
        code = self._code.get(string)
        if code is None:
            code = self._code[string] = len(self.strings)
            self.strings.append(string)
        return code

    def __len__(self) -> int:
        return len(self.strings)


def _hash(rest: int, code: int) -> int:
    return (rest * 0x9E3779B1) ^ (code * 0x85EBCA77)


class SuffixTrie:
    """Label sequences as node ids: node 0 is the empty sequence; every other node is a
    label followed by the sequence of another node. ``suffixes(codes)`` gives the node of
    every suffix ``codes[i:]`` of a sequence of label codes (``labels``), so a path whose
    oldest touches a lookback drops is named by the node held at its first kept touch.
    Nodes are not released one by one: ``compacted`` builds the trie of the live ones.

    A node is found from (the node after it, its label) through an open-addressing hash
    table of node ids (int32, at most half full) that reads the keys from the nodes' own
    columns: 8 bytes a node in the columns and 8-16 in the table, where a dict of boxed
    ints would take ~100."""

    __slots__ = ("_table", "_rest", "_label_code", "labels", "_sequences", "_suffix_bytes")

    def __init__(self, labels: Interned | None = None) -> None:
        self._table = array("i", bytes(4 * 1024))  # node ids by hash of (rest, label code); 0: empty
        self._rest = array("i", [0])  # node -> the node of the labels after its first
        self._label_code = array("i", [0])  # node -> its first label's code
        self.labels = Interned() if labels is None else labels
        self._sequences: dict[int, Labels] = {0: ()}
        self._suffix_bytes: dict[bytes, bytes] = {}

    def suffix_bytes(self, codes: bytes) -> bytes:
        """``suffixes`` of int32 label codes, as int32 bytes: the answers for the most
        recent sequences are kept (most paths repeat a common one), a bounded number."""
        cache = self._suffix_bytes
        found = cache.get(codes)
        if found is None:
            if len(cache) >= _SUFFIXES_KEPT:
                cache.clear()
            found = cache[codes] = array("i", self.suffixes(array("i", codes))).tobytes()
        return found

    def suffixes(self, codes: Sequence[int]) -> list[int]:
        nodes = [0] * len(codes)
        node = 0
        for i in range(len(codes) - 1, -1, -1):
            nodes[i] = node = self._node(node, codes[i])
        return nodes

    def _node(self, rest: int, code: int) -> int:
        """The node of label ``code`` followed by the sequence of ``rest``."""
        table, rests, codes = self._table, self._rest, self._label_code
        mask = len(table) - 1
        slot = _hash(rest, code) & mask
        node = table[slot]
        while node:
            if rests[node] == rest and codes[node] == code:
                return node
            slot = (slot + 1) & mask
            node = table[slot]
        node = table[slot] = len(rests)
        rests.append(rest)
        codes.append(code)
        if 2 * len(rests) > len(table):
            self._rehash(2 * len(table))
        return node

    def _rehash(self, size: int) -> None:
        table = self._table = array("i", bytes(4 * size))
        mask = size - 1
        for node, (rest, code) in enumerate(zip(self._rest, self._label_code)):
            if node:
                slot = _hash(rest, code) & mask
                while table[slot]:
                    slot = (slot + 1) & mask
                table[slot] = node

    def sequence(self, node: int) -> Labels:
        """The label sequence of ``node`` (built once, then kept)."""
        sequences = self._sequences
        sequence = sequences.get(node)
        if sequence is None:
            asked, strings, labels = node, self.labels.strings, []
            while sequence is None:
                labels.append(strings[self._label_code[node]])
                node = self._rest[node]
                sequence = sequences.get(node)
            if len(sequences) >= _SEQUENCES_KEPT:
                sequences.clear()
                sequences[0] = ()
            sequence = sequences[asked] = (*labels, *sequence)
        return sequence

    def label_codes(self, nodes: np.ndarray) -> np.ndarray:
        """The code of each node's first label."""
        return np.frombuffer(self._label_code, dtype=np.int32)[nodes]  # a copy: the buffer may grow later

    def compacted(self, live: np.ndarray) -> tuple["SuffixTrie", np.ndarray]:
        """A trie of the ``live`` nodes' sequences (distinct node ids, with the same label
        codes), and the new id of every node of this one (dropped nodes map to 0)."""
        compacted = SuffixTrie(self.labels)
        renumbered = array("i", bytes(4 * len(self._rest)))
        rest, label_code = self._rest, self._label_code
        for node in live.tolist():
            chain = []
            while node and not renumbered[node]:
                chain.append(node)
                node = rest[node]
            onto = renumbered[node]
            for node in reversed(chain):
                renumbered[node] = onto = compacted._node(onto, label_code[node])
        return compacted, np.array(renumbered, dtype=np.int32)

    def __len__(self) -> int:
        return len(self._rest)
