"""Checking the parameters of the views: a bad one raises `ViewParameterError`.

The HTTP API answers such an error with 422 and the CLI with exit code 2; both
show ``param`` and ``reason``. Times may be given as aware datetimes, dates
(midnight UTC) or ISO 8601 strings (without an offset they mean UTC).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timezone


class ViewParameterError(ValueError):
    """A view was asked with a parameter it cannot accept."""

    def __init__(self, param: str, reason: str):
        self.param = param
        self.reason = reason
        super().__init__(f"{param}: {reason}")

    def as_dict(self) -> dict[str, str]:
        return {"field": self.param, "reason": self.reason}


def moment(param: str, value: object, *, required: bool = False) -> datetime | None:
    """An aware UTC datetime from a datetime, date or ISO string; None stays None
    unless ``required``."""
    if value is None:
        if required:
            raise ViewParameterError(param, "required: a date or time")
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ViewParameterError(param, f"not an ISO 8601 date or time: {value!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return in_utc(param, parsed)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ViewParameterError(param, "must be timezone-aware")
        return in_utc(param, value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    raise ViewParameterError(param, f"expected a date or time, got {type(value).__name__}")


def in_utc(param: str, moment: datetime) -> datetime:
    """``moment`` in UTC; a time that leaves years 1-9999 on the way (0001-01-01T00:00+14:00)
    is a bad parameter, not a crash."""
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ViewParameterError(param, f"{moment.isoformat()} is outside years 1-9999 in UTC") from None


def window(start: object, end: object) -> tuple[datetime | None, datetime | None]:
    """The half-open window ``[from, to)``; ``to`` must come after ``from``."""
    lower, upper = moment("from", start), moment("to", end)
    if lower is not None and upper is not None and upper <= lower:
        raise ViewParameterError("to", "must be later than from")
    return lower, upper


def positive_days(param: str, value: object, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    number = _number(param, value)
    if not (math.isfinite(number) and number > 0):
        raise ViewParameterError(param, f"must be a finite number of days > 0, got {value!r}")
    return number


def positive_int(param: str, value: object, *, maximum: int = 1_000_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        else:
            raise ViewParameterError(param, f"must be a whole number >= 1, got {value!r}")
    if not 1 <= value <= maximum:
        raise ViewParameterError(param, f"must be between 1 and {maximum}, got {value}")
    return value


def choice(param: str, value: object, accepted: Sequence[str]) -> str:
    if value not in accepted:
        raise ViewParameterError(param, f"must be one of {', '.join(accepted)}, got {value!r}")
    return value  # type: ignore[return-value]


def flag(param: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise ViewParameterError(param, f"must be true or false, got {value!r}")


def optional_text(param: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ViewParameterError(param, f"must be a non-empty text, got {value!r}")
    return value


def _number(param: str, value: object) -> float:
    if isinstance(value, bool):
        raise ViewParameterError(param, f"must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ViewParameterError(param, f"must be a number, got {value!r}")
