"""One copy of each label sequence, however many groups' contributions hold it.

Most groups share their path's label sequence with many others (a few thousand distinct
sequences among a hundred thousand paths), so contributions that hold the shared copy
instead of their own tuple save its memory once per group.
"""

from __future__ import annotations

from projections.attribution.paths import Labels


class InternedSequences:
    """A multiset of label sequences that hands out the copy it holds of each."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[Labels, list] = {}  # sequence -> [the copy held, how many hold it]

    def get(self, labels: Labels) -> Labels:
        """The copy held of ``labels`` (``labels`` itself when none is)."""
        entry = self._held.get(labels)
        return labels if entry is None else entry[0]

    def add(self, labels: Labels) -> None:
        entry = self._held.get(labels)
        if entry is None:
            self._held[labels] = [labels, 1]
        else:
            entry[1] += 1

    def remove(self, labels: Labels) -> None:
        entry = self._held[labels]
        entry[1] -= 1
        if not entry[1]:
            del self._held[labels]
