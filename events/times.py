"""Time on the log: one epoch, microseconds, and the one text form the hash chain holds.

The store keeps every time as integer microseconds since the Unix epoch in UTC, and the
canonical bytes of the hash chain hold each time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. These helpers
convert between the three forms cheaply, since the hot paths (encoding a batch, reading raw
rows, verifying the chain) call them per event; dates are cached: events cluster in few days.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()
_MICROSECOND = timedelta(microseconds=1)
_DAY_MICROS = 86_400_000_000


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch (UTC) of an aware datetime."""
    try:
        return (moment - EPOCH) // _MICROSECOND  # timedelta arithmetic in C: faster than by hand
    except TypeError:
        raise ValueError(f"naive datetime {moment.isoformat()}: the store needs timezone-aware times") from None


def from_micros(micros: int) -> datetime:
    """The UTC datetime of microseconds since the epoch."""
    return EPOCH + timedelta(0, 0, micros)


_POSITION_BITS = 64  # above every log position (SQLite's are below 2^63)
_POSITION_MASK = (1 << _POSITION_BITS) - 1


def moment_key(moment: datetime, position: int) -> int:
    """``(moment, position)`` as one int ordered as the pair: µs × 2^64 + position (one
    object where the pair is a tuple, a datetime and an int)."""
    return to_micros(moment) << _POSITION_BITS | position


def moment_of_key(key: int) -> tuple[datetime, int]:
    """The ``(moment, position)`` of a ``moment_key``."""
    return from_micros(key >> _POSITION_BITS), key & _POSITION_MASK


@lru_cache(maxsize=16_384)
def date_text(ordinal: int) -> str:
    """``YYYY-MM-DD`` of a proleptic Gregorian ordinal, cached (events cluster in few days)."""
    return date.fromordinal(ordinal).isoformat()  # isoformat, not strftime: %Y drops zeros before 1000


def utc_text(moment: datetime) -> str:
    """``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: the form the canonical bytes hold,
    so it never changes. Built by hand with the date part cached (a third of the cost of
    ``astimezone().isoformat()``; every published and every hashed event formats two)."""
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    return "%sT%02d:%02d:%02d.%06dZ" % (
        date_text(moment.toordinal()), moment.hour, moment.minute, moment.second, moment.microsecond
    )


def utc_text_of_micros(micros: int) -> str:
    """``utc_text`` of a time stored as microseconds since the epoch (verify reads raw rows)."""
    days, rest = divmod(micros, _DAY_MICROS)
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return "%sT%02d:%02d:%02d.%06dZ" % (date_text(EPOCH_ORDINAL + days), hours, minutes, seconds, fraction)


def micros_and_utc_text(moment: datetime) -> tuple[int, str]:
    """``(to_micros(moment), utc_text(moment))`` in one pass: the encoder's per-event call.
    Validated events are already in UTC (``events.models.Event``); anything else takes
    the general path."""
    offset = moment.utcoffset()
    if offset is None or offset:
        return to_micros(moment), utc_text(moment)
    ordinal = moment.toordinal()
    hour, minute, second, micro = moment.hour, moment.minute, moment.second, moment.microsecond
    micros = (((ordinal - EPOCH_ORDINAL) * 86_400 + hour * 3600 + minute * 60 + second) * 1_000_000) + micro
    return micros, "%sT%02d:%02d:%02d.%06dZ" % (date_text(ordinal), hour, minute, second, micro)
