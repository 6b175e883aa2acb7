"""Per-group rows held in numpy columns, for the views' queries with parameters.

A query with a window or a lookback cannot be maintained as a running total (its answer
depends on the parameters), but it need not walk a Python object per group either: each
group keeps one compact row in numpy columns, and a query filters and groups the columns
in a few vectorised passes.

- ``SlotRows``: fixed-width packed records at the groups' slots (``base.GroupSlots``,
  reused when freed, so the columns stay as long as the largest population): one numpy
  structured array, whose fields are the columns and whose records' bytes can be
  compared with a contribution's in place.
- ``PackedRowAggregate``: a maintained aggregate whose contribution is its row, packed,
  kept by slot with no dict by root or by row of its own.
- ``Runs``: a variable-length run of items per row (a path's touches), flattened into
  columns; a released run is garbage until the runs are compacted (amortised O(1)).
- ``Interned``: strings as dense integer codes; ``SuffixTrie``: label sequences as node
  ids, one per suffix, so a path cut by a lookback (its oldest touches dropped) is
  identified by the node of its first kept touch.
"""

from __future__ import annotations

import struct
from abc import abstractmethod
from array import array
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import numpy as np

from events.times import to_micros
from projections.aggregates.base import MaintainedAggregate
from projections.attribution.paths import Labels
from projections.group import GroupSummary

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
    """Fixed-width records at the slots the caller gives, in one packed numpy structured
    array: ``fields`` are ``(name, dtype)`` in order, little-endian, so a record's bytes are
    what ``struct.pack("<...")`` of its fields gives."""

    __slots__ = ("_records", "_bytes", "_live", "_end", "_size")

    def __init__(self, fields: Sequence[tuple[str, str]]):
        records = np.zeros(1024, dtype=np.dtype(list(fields)))
        self._size = records.dtype.itemsize
        self._live = np.zeros(1024, dtype=bool)
        self._end = 0  # slots ever used: [0, end)
        self._hold(records)

    def _hold(self, records: np.ndarray) -> None:
        self._records = records
        self._bytes = memoryview(records.view(np.uint8))  # the records' bytes, written and compared in place

    def __getstate__(self) -> tuple:
        return self._records, self._live, self._end  # the memoryview is remade: it cannot be pickled

    def __setstate__(self, state: tuple) -> None:
        records, self._live, self._end = state
        self._size = records.dtype.itemsize
        self._hold(records)

    def put(self, slot: int, record: bytes) -> None:
        """Hold ``record`` (its fields' bytes) at ``slot`` (free)."""
        if slot >= len(self._live):
            self._live = _grown(self._live, slot + 1)
            self._hold(_grown(self._records, slot + 1))
        start = slot * self._size
        self._bytes[start:start + self._size] = record
        self._live[slot] = True
        if slot >= self._end:
            self._end = slot + 1

    def starts_with(self, slot: int, prefix: bytes) -> bool:
        """Whether the record held at ``slot`` begins with the bytes ``prefix``."""
        start = slot * self._size
        return self._bytes[start:start + len(prefix)] == prefix

    def fields(self, slot: int, layout: struct.Struct, offset: int = 0) -> tuple:
        """``layout`` unpacked from the record at ``slot``, ``offset`` bytes in."""
        return layout.unpack_from(self._bytes, slot * self._size + offset)

    def clear(self, slot: int) -> None:
        self._live[slot] = False

    def holds(self, slot: int) -> bool:
        return slot < self._end and bool(self._live[slot])

    def column(self, name: str) -> np.ndarray:
        """A view of the field over the used slots (free slots hold stale values)."""
        return self._records[name][: self._end]

    @property
    def live(self) -> np.ndarray:
        """Which used slots hold a row."""
        return self._live[: self._end]

    def nbytes(self) -> int:
        return self._records.nbytes + self._live.nbytes


class PackedRowAggregate(MaintainedAggregate):
    """An aggregate that keeps each group's contribution (bytes: a packed row) as its row
    in ``SlotRows`` (and what else it keeps per row) at the group's slot: a changed group's
    contribution is compared with what the slot holds (``holds``: exactly, byte for byte)."""

    _rows: SlotRows

    @abstractmethod
    def contribution(self, group: GroupSummary) -> bytes | None:
        """The group's row, packed (None: it has none). Pure."""

    @abstractmethod
    def holds(self, slot: int, contribution: bytes) -> bool:
        """Whether the row held at ``slot`` is exactly ``contribution``'s."""

    @abstractmethod
    def _put(self, slot: int, contribution: bytes) -> None:
        """Hold the row of ``contribution`` at ``slot``."""

    @abstractmethod
    def _clear(self, slot: int) -> None:
        """Take the row held at ``slot`` out."""

    def update(self, slot: int, group: GroupSummary | None) -> None:
        new = None if group is None else self.contribution(group)
        if self._rows.holds(slot):
            if new is not None and self.holds(slot, new):
                return  # most live changes leave the row as it was
            self._clear(slot)
        if new is not None:
            self._put(slot, new)


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

    @property
    def label_code(self) -> Sequence[int]:
        """Node -> the code of its first label (read only)."""
        return self._label_code

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
