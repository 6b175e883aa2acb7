"""First contact in a window (``from``/``to``), answered from every group's row held in numpy columns.

Definition: ``projections.first_contact.first_contact_view`` with any parameters. The
default documents are maintained by ``aggregates.first_contact`` (registered first); this
aggregate answers the windows.

Each group with a touch keeps one row at its slot: its first touch's time and its channel's,
campaign's and source's codes, whether it converted after that touch, and its net revenue.
The row is the group's contribution (packed), so no other copy of it is kept. A query
selects the rows whose first touch is in the window and counts them per label with
``np.bincount`` (O(groups) in numpy, no Python object per group); the definition's own
``first_contact_document`` renders the tallies. Revenue is summed in float64, exact while
the total of every converted group's net revenue, in absolute value, stays below 2**53
(ten-thousandths): beyond that the aggregate leaves the query to the definition.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from events.times import to_micros
from projections import parameters
from projections.aggregates.columns import Interned, PackedRowAggregate, SlotRows
from projections.first_contact import first_contact_document
from projections.group import GroupSummary
from projections.parameters import ViewParameterError
from projections.population import GROUP_BY, label_index, touch_label

_ROW = struct.Struct("<qiii?q")  # first touch (µs), channel, campaign and source codes, converted, net revenue e4
_FIELDS = [("first", "<i8"), ("channel", "<i4"), ("campaign", "<i4"), ("source", "<i4"), ("converted", "?"),
           ("net_e4", "<i8")]  # _ROW's layout: the packed contribution is the record
_NET_E4 = struct.Struct("<q")
_EXACT_FLOAT_INTEGERS = 1 << 53
_CHANNEL, _CAMPAIGN, _SOURCE = label_index("channel"), label_index("campaign"), label_index("source")


class FirstContactQueries(PackedRowAggregate):
    """``first_contact`` with any ``group_by`` and window, from the groups' first touches."""

    view = "first_contact"

    def __init__(self) -> None:
        self._labels = Interned()
        self._rows = SlotRows(_FIELDS)
        self._revenue_magnitude = 0  # the sum of |net revenue e4| of the converted rows

    def contribution(self, group: GroupSummary) -> bytes | None:
        """The group's row, packed (None: it has no touch)."""
        first = group.first_touch
        if first is None:
            return None
        converted = group.converted_after_touch
        code = self._labels.code
        return _ROW.pack(
            to_micros(first[0]),
            code(touch_label(first, _CHANNEL)),
            code(touch_label(first, _CAMPAIGN)),
            code(touch_label(first, _SOURCE)),
            converted,
            group.net_e4 if converted else 0,
        )

    def holds(self, slot: int, contribution: bytes) -> bool:
        return self._rows.starts_with(slot, contribution)

    def _put(self, slot: int, contribution: bytes) -> None:
        self._rows.put(slot, contribution)
        self._revenue_magnitude += abs(_NET_E4.unpack_from(contribution, _ROW.size - _NET_E4.size)[0])

    def _clear(self, slot: int) -> None:
        self._rows.clear(slot)
        self._revenue_magnitude -= abs(self._rows.fields(slot, _NET_E4, _ROW.size - _NET_E4.size)[0])

    def answers(self, params: Mapping[str, Any]) -> bool:
        if not set(params) <= {"group_by", "start", "end"} or self._revenue_magnitude >= _EXACT_FLOAT_INTEGERS:
            return False
        try:
            parameters.choice("group_by", params.get("group_by", "channel"), GROUP_BY)
            parameters.window(params.get("start"), params.get("end"))
        except ViewParameterError:
            return False
        return True

    def document(self, population: Any, params: Mapping[str, Any]) -> dict:
        group_by = parameters.choice("group_by", params.get("group_by", "channel"), GROUP_BY)
        lower, upper = parameters.window(params.get("start"), params.get("end"))
        rows = self._rows
        selected = rows.live
        first = rows.column("first")
        if lower is not None:
            selected = selected & (first >= to_micros(lower))
        if upper is not None:
            selected = selected & (first < to_micros(upper))
        codes = rows.column(group_by)[selected]
        converted = rows.column("converted")[selected]
        converted_codes, net_e4 = codes[converted], rows.column("net_e4")[selected][converted]
        size = len(self._labels)
        per_label = zip(
            np.bincount(codes, minlength=size).tolist(),
            np.bincount(converted_codes, minlength=size).tolist(),
            np.bincount(converted_codes, weights=net_e4, minlength=size).tolist(),
        )
        strings = self._labels.strings
        tallies = {
            strings[code]: (reached, conversions, int(revenue_e4))
            for code, (reached, conversions, revenue_e4) in enumerate(per_label)
            if reached
        }
        return first_contact_document(group_by, lower, upper, tallies)

    def nbytes(self) -> int:
        """The columns' bytes (the contributions aside)."""
        return self._rows.nbytes()
