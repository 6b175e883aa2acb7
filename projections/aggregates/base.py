"""Views maintained from per-group contributions: the KTable adder/subtractor pattern.

A view that is a function of every group (``projections.views``) costs a walk of the
whole population per recompute. A *maintained* view instead keeps an aggregate that
each group adds its contribution to: when a group changes, its old contribution is
subtracted and its new one added, so the work per change is proportional to the
change, not to the population. The view's definition stays the function in
``projections.views``; an aggregate must give byte-identical documents (the tests
hold every aggregate to its definition after random changes).

Contributions are immutable values extracted from a ``GroupSummary`` when it is
added, and kept: a summary may share lists with the journeys it came from, so it cannot
be read again later to subtract it. They are kept by the group's *slot* (``GroupSlots``):
a dense integer the aggregates of one ``MaintainedViews`` share, so a million groups cost
one dict by root, not a dict per aggregate (~50 bytes a group each, ~500 for ten
aggregates). ``MaintainedViews`` holds a slot's contributions to every
``ContributionAggregate`` as one row (``KeptContributions``: a list by slot an aggregate in
memory, or rows in a file, since a row is read only when its group changes); the
aggregates with numpy columns (``columns.PackedRowAggregate``) hold theirs in them.

Float totals are kept exact (``ExactSum``): an exact sum rounded once equals the
definitions' ``math.fsum`` (correctly rounded) whatever the order of additions and
subtractions, so a maintained view equals a replay bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, repeat
from typing import Any, Generic, TypeVar

from projections.group import GroupSummary

C = TypeVar("C", bound=Hashable)


class ExactSum:
    """A sum of floats with no rounding error: an integer count of 2**-scale, the scale
    being the finest any term needed so far (every finite float is an integer multiple of
    2**-1074; most terms need far less, and the integer stays a few words long where a
    fixed 2**-1074 would take ~170 bytes for each of the many sums kept).

    ``value`` is the exact total correctly rounded to a float: what ``math.fsum`` of the
    same terms returns, in whatever order they were added and removed."""

    __slots__ = ("_units", "_scale")

    def __init__(self) -> None:
        self._units = 0
        self._scale = 0

    def _units_of(self, value: float) -> int:
        numerator, denominator = value.as_integer_ratio()  # denominator is a power of two
        scale = denominator.bit_length() - 1
        if scale > self._scale:  # a finer term: the total so far in its units
            self._units <<= scale - self._scale
            self._scale = scale
        return numerator << (self._scale - scale)

    def add(self, value: float) -> None:
        units = self._units_of(value)  # first: it may rescale the total
        self._units += units

    def subtract(self, value: float) -> None:
        units = self._units_of(value)
        self._units -= units

    @property
    def value(self) -> float:
        return self._units / (1 << self._scale)  # int / int is correctly rounded

    def __bool__(self) -> bool:
        return self._units != 0


class SortedValues:
    """A multiset kept sorted (order statistics for exact medians, percentiles, ranks).

    Kept in sorted blocks of about ``LOAD`` values (the layout of the ``sortedcontainers``
    library; ``load`` values per block): an insert or remove is a binary search over the blocks' maxima and a shift
    inside one block, so it stays a few µs at a million values, where one flat list would
    shift megabytes (measured 180–420 µs per change). Positional access walks the blocks'
    lengths: O(n / load).

    ``typecode`` (``array``'s: ``"q"``, ``"d"``): the values are all ints or all floats, and
    the blocks are arrays of them, 8 bytes a value where a list holds a pointer to an
    object of 24-32 more (a million first-touch times: ~30 MB fewer). Values read back are
    equal and of the same type."""

    __slots__ = ("_blocks", "_maxes", "_len", "_load", "_typecode")

    def __init__(self, values: Iterable[Any] = (), *, load: int = 1000, typecode: str | None = None) -> None:
        ordered = sorted(values)
        self._load = load
        self._typecode = typecode
        self._blocks: list[Any] = [self._block(ordered[i:i + load]) for i in range(0, len(ordered), load)]
        self._maxes: list[Any] = [block[-1] for block in self._blocks]
        self._len = len(ordered)

    def add(self, value: Any) -> None:
        blocks, maxes = self._blocks, self._maxes
        if not maxes:
            blocks.append(self._block([value]))
            maxes.append(value)
        else:
            i = bisect_left(maxes, value)
            if i == len(maxes):  # above every value: the last block grows
                i -= 1
                blocks[i].append(value)
                maxes[i] = value
            else:
                insort(blocks[i], value)
            block = blocks[i]
            load = self._load
            if len(block) > 2 * load:  # split: both halves keep at least ``load`` values
                blocks.insert(i + 1, block[load:])
                del block[load:]
                maxes.insert(i, block[-1])
        self._len += 1

    def remove(self, value: Any) -> None:
        """Remove one occurrence of ``value`` (KeyError if there is none)."""
        blocks, maxes = self._blocks, self._maxes
        i = bisect_left(maxes, value)
        if i == len(maxes):
            raise KeyError(value)
        block = blocks[i]
        j = bisect_left(block, value)
        if block[j] != value:
            raise KeyError(value)
        del block[j]
        if block:
            maxes[i] = block[-1]
        else:
            del blocks[i]
            del maxes[i]
        self._len -= 1

    def _block(self, values: list[Any]) -> Any:
        return values if self._typecode is None else array(self._typecode, values)

    def bisect_left(self, value: Any) -> int:
        """How many values are strictly below ``value``."""
        i = bisect_left(self._maxes, value)
        if i == len(self._maxes):
            return self._len
        return sum(map(len, self._blocks[:i])) + bisect_left(self._blocks[i], value)

    def bisect_right(self, value: Any) -> int:
        """How many values are at or below ``value``."""
        i = bisect_right(self._maxes, value)
        if i == len(self._maxes):
            return self._len
        return sum(map(len, self._blocks[:i])) + bisect_right(self._blocks[i], value)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Any]:
        return chain.from_iterable(self._blocks)

    def __reversed__(self) -> Iterator[Any]:
        return chain.from_iterable(reversed(block) for block in reversed(self._blocks))

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self._slice(index)
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        block, offset = self._locate(index)
        return self._blocks[block][offset]

    def _locate(self, index: int) -> tuple[int, int]:
        """The block and the offset in it of position ``index`` (0 <= index < len): walked
        from the nearer end."""
        blocks = self._blocks
        if index < self._len // 2:
            for number, block in enumerate(blocks):
                if index < len(block):
                    return number, index
                index -= len(block)
        else:
            from_end = self._len - index  # 1 = the last value
            for number in range(len(blocks) - 1, -1, -1):
                size = len(blocks[number])
                if from_end <= size:
                    return number, size - from_end
                from_end -= size
        raise IndexError(index)  # unreachable: callers check the bounds

    def _slice(self, window: slice) -> list[Any]:
        start, stop, step = window.indices(self._len)
        if step != 1:
            return self.values[window]
        found: list[Any] = []
        if start >= stop:
            return found
        number, offset = self._locate(start)
        wanted = stop - start
        for block in self._blocks[number:]:
            found.extend(block[offset:offset + wanted - len(found)])
            offset = 0
            if len(found) == wanted:
                break
        return found

    @property
    def values(self) -> list[Any]:
        """Every value in ascending order, as a new list (O(n): for renders, not per change)."""
        return list(chain.from_iterable(self._blocks))


class GroupSlots:
    """A dense integer slot per group root, shared by the aggregates of one
    ``MaintainedViews``: each keeps what it holds of a group at the group's slot. A slot
    freed by a group that no longer exists is the next new group's, so the aggregates'
    storage stays as long as the largest population."""

    __slots__ = ("_slot_of", "_free")

    def __init__(self) -> None:
        self._slot_of: dict[str, int] = {}
        self._free: list[int] = []

    def slot(self, root: str) -> int:
        """The slot of ``root``, given one if it has none."""
        slot = self._slot_of.get(root)
        if slot is None:
            # with no free slot, the slots held are exactly 0 .. len - 1
            slot = self._slot_of[root] = self._free.pop() if self._free else len(self._slot_of)
        return slot

    def get(self, root: str) -> int | None:
        return self._slot_of.get(root)

    def release(self, root: str) -> None:
        """``root``'s slot is free (its holders must have emptied it)."""
        self._free.append(self._slot_of.pop(root))

    def __len__(self) -> int:
        return len(self._slot_of)

    @property
    def given(self) -> int:
        """How many slots were ever given: every slot is below it."""
        return len(self._slot_of) + len(self._free)


class MaintainedAggregate(ABC):
    """One maintained view, kept group by group at the groups' slots (``GroupSlots``).

    Subclasses set ``view`` (the name in ``projections.views``' specs) and say which
    parameter sets they answer with ``answers``."""

    view: str = ""

    @abstractmethod
    def update(self, slot: int, group: GroupSummary | None) -> None:
        """The group at ``slot`` is now ``group`` (None: it no longer exists)."""

    @abstractmethod
    def answers(self, params: Mapping[str, Any]) -> bool:
        """Whether ``document`` can render the view with these parameters (the
        merged parameters of the view, ``now`` included where the view takes one)."""

    @abstractmethod
    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        """The view's document: equal to ``projections.views``' function with ``params``."""


class ContributionAggregate(MaintainedAggregate, Generic[C]):
    """One maintained view: ``contribution`` (pure) extracts what a group adds,
    ``add``/``subtract`` keep the totals, ``document`` renders them. What a group
    contributed is held for it by ``MaintainedViews`` (``KeptContributions``: in memory, or
    in a file), and handed back to ``keep`` when the group changes.

    Subclasses set ``view``, implement the four methods, and say which parameter sets
    they answer with ``answers``; ``totals_hold_them`` when their totals hold every
    contribution itself (a ranking of them), so ``MaintainedViews`` never puts them in a file."""

    totals_hold_them = False

    # --- what a subclass defines ------------------------------------------------------

    @abstractmethod
    def contribution(self, group: GroupSummary) -> C | None:
        """What ``group`` adds to the totals (None: nothing). Immutable, pure."""

    @abstractmethod
    def add(self, contribution: C) -> None:
        """Add a contribution to the totals."""

    @abstractmethod
    def subtract(self, contribution: C) -> None:
        """Take a contribution ``add`` was given out of the totals."""

    # --- the shell's side ---------------------------------------------------------------

    def update(self, slot: int, group: GroupSummary | None) -> None:
        raise TypeError(f"{type(self).__name__}: its contributions are kept by MaintainedViews, which calls keep()")

    def keep(self, slot: int, held: Any, group: GroupSummary | None) -> Any:
        """The group at ``slot``, which contributed ``held`` (None: nothing), is now ``group``
        (None: it no longer exists): the totals follow, and what to hold for it now is
        returned (``held`` itself when nothing changed)."""
        new = None if group is None else self.contribution(group)
        if new == held:  # most live changes (a prospect's later touch, a repeat order) leave it as it was
            return held
        if held is not None:
            self.subtract(held)
        if new is not None:
            self.add(new)
        return new

    def given_back(self, slot: int, held: Any) -> C | None:
        """The contribution ``held`` (what ``keep`` returned for ``slot``) stands for."""
        return held

    def to_plain(self, held: Any) -> Any:
        """``held`` (not None) as builtins where it can be (tuples, not named tuples), for a
        store that encodes them (``KeptContributions.plain``); ``from_plain`` gives it back."""
        return held

    def from_plain(self, plain: Any) -> Any:
        """What ``to_plain`` was given (``plain`` may also be that value itself)."""
        return plain


class KeptContributions(ABC):
    """Where ``MaintainedViews`` holds what each group contributed to the aggregates that
    keep contributions: a row by slot, one item per such aggregate (None: nothing at all).
    Read only when the group changes, so it may live in a file (``application.journey_spill``)."""

    __slots__ = ()
    plain = False  # whether rows are put as ``ContributionAggregate.to_plain`` gives them (a store that encodes them)

    @abstractmethod
    def get(self, slot: int) -> tuple | None:
        """The row held at ``slot`` (None: none)."""

    @abstractmethod
    def put(self, slot: int, row: tuple | None) -> None:
        """Hold ``row`` at ``slot`` (None: nothing any more)."""


class HeldContributions(KeptContributions):
    """The rows in memory, a list by slot for each aggregate: no tuple a group."""

    __slots__ = ("_columns",)

    def __init__(self, width: int) -> None:
        self._columns: tuple[list[Any], ...] = tuple([] for _ in range(width))

    def get(self, slot: int) -> tuple | None:
        columns = self._columns
        if not columns or slot >= len(columns[0]):
            return None
        row = tuple(column[slot] for column in columns)
        return None if row.count(None) == len(row) else row

    def put(self, slot: int, row: tuple | None) -> None:
        columns = self._columns
        if not columns:
            return
        if slot >= len(columns[0]):
            if row is None:
                return
            for column in columns:
                column.extend(repeat(None, slot + 1 - len(column)))
        for column, item in zip(columns, row or repeat(None)):
            column[slot] = item
