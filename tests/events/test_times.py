"""``events.times``: the one epoch, microseconds, and the text form the hash chain holds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st
from pydantic_core import TzInfo

from events.times import EPOCH, from_micros, micros_and_utc_text, to_micros, utc_text, utc_text_of_micros

OFFSETS = [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), TzInfo(0)]
MOMENTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from(OFFSETS))
MICROS = st.integers(min_value=to_micros(datetime(1, 1, 1, tzinfo=timezone.utc)),
                     max_value=to_micros(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc)))


def isoformat_in_utc(moment: datetime) -> str:
    """The definition ``utc_text`` must keep (the canonical bytes of every stored hash hold it)."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def test_utc_text__zero_pads_early_years_and_keeps_microseconds():
    assert utc_text(datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)) == "0999-01-02T03:04:05.000006Z"
    assert utc_text(datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=2)))) == "2023-12-31T23:00:00.000000Z"


@given(moment=MOMENTS)
def test_utc_text__is_isoformat_of_the_utc_time_for_any_moment_and_offset(moment):
    assert utc_text(moment) == isoformat_in_utc(moment)


@given(moment=MOMENTS)
def test_to_micros__is_the_datetime_arithmetic_it_replaces_for_any_moment_and_offset(moment):
    assert to_micros(moment) == (moment - EPOCH) // timedelta(microseconds=1)


@given(moment=MOMENTS)
def test_micros_and_utc_text__is_both_helpers_in_one_pass(moment):
    assert micros_and_utc_text(moment) == (to_micros(moment), utc_text(moment))


@given(micros=MICROS)
def test_from_micros__round_trips_through_to_micros(micros):
    moment = from_micros(micros)

    assert moment.tzinfo is timezone.utc
    assert to_micros(moment) == micros


@given(micros=MICROS)
def test_utc_text_of_micros__is_the_hashing_text_of_the_stored_time(micros):
    assert utc_text_of_micros(micros) == utc_text(from_micros(micros))


def test_to_micros__refuses_a_naive_time_naming_the_problem():
    with pytest.raises(ValueError, match="naive datetime"):
        to_micros(datetime(2024, 1, 1))
