"""One copy of each equal value, however many groups' contributions hold it.

Most groups share their path's label sequence with many others (a few thousand distinct
sequences among a hundred thousand paths), and most prospects share their whole
contribution to a path view (a few thousand distinct among tens of thousands), so
contributions that hold the shared copy instead of their own save its memory once per
group. Counted, so a value no group holds any more is let go.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V", bound=Hashable)


class InternedValues(Generic[V]):
    """A multiset of immutable values that hands out the copy it holds of each."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[V, list] = {}  # value -> [the copy held, how many hold it]

    def get(self, value: V) -> V:
        """The copy held of ``value`` (``value`` itself when none is)."""
        entry = self._held.get(value)
        return value if entry is None else entry[0]

    def add(self, value: V) -> None:
        entry = self._held.get(value)
        if entry is None:
            self._held[value] = [value, 1]
        else:
            entry[1] += 1

    def remove(self, value: V) -> None:
        entry = self._held[value]
        entry[1] -= 1
        if not entry[1]:
            del self._held[value]

    def __len__(self) -> int:
        return len(self._held)
