from datetime import date, datetime, timezone

import pytest

from projections import views
from projections.parameters import ViewParameterError, moment
from tests.projections.spec import NOW, given, touch

POPULATION = given(touch("email", at="2024-01-01", customer="1")).population()

BAD_CALLS = [
    ("group_by", lambda p: views.first_contact_view(p, group_by="country")),
    ("from", lambda p: views.first_contact_view(p, start="yesterday")),
    ("to", lambda p: views.first_contact_view(p, start="2024-02-01", end="2024-01-01")),
    ("from", lambda p: views.first_contact_view(p, start=datetime(2024, 1, 1))),
    ("now", lambda p: views.conversion_time_view(p, now=None)),
    ("group_by", lambda p: views.conversion_time_view(p, now=NOW, group_by="channel")),
    ("model", lambda p: views.attribution_view(p, model="")),
    ("lookback_days", lambda p: views.attribution_view(p, model="linear", lookback_days=0)),
    ("lookback_days", lambda p: views.attribution_view(p, model="linear", lookback_days=float("nan"))),
    ("half_life_days", lambda p: views.attribution_view(p, model="time_decay", half_life_days=-1)),
    ("half_life_days", lambda p: views.attribution_view(p, model="time_decay", half_life_days=True)),
    ("top", lambda p: views.paths_view(p, top=0)),
    ("top", lambda p: views.paths_view(p, top="many")),
    ("collapse_repeats", lambda p: views.paths_view(p, collapse_repeats="maybe")),
    ("by", lambda p: views.top_customers_view(p, now=NOW, by="charm")),
    ("limit", lambda p: views.top_customers_view(p, now=NOW, limit=-5)),
    ("channel", lambda p: views.prospects_view(p, now=NOW, channel="")),
    ("limit", lambda p: views.data_quality_view(p, limit=10**9)),
]


@pytest.mark.parametrize(("param", "call"), BAD_CALLS, ids=[f"{n}-{param}" for n, (param, _) in enumerate(BAD_CALLS)])
def test_view_parameters__a_bad_value_is_refused_naming_the_parameter(param, call):
    with pytest.raises(ViewParameterError) as refused:
        call(POPULATION)

    assert refused.value.param == param
    assert refused.value.reason
    assert isinstance(refused.value, ValueError)


def test_view_parameters__times_may_be_dates_aware_datetimes_or_iso_text_read_as_utc():
    expected = datetime(2024, 3, 1, tzinfo=timezone.utc)

    assert moment("from", "2024-03-01") == expected
    assert moment("from", "2024-03-01T01:00:00+01:00") == expected
    assert moment("from", "2024-03-01T00:00:00Z") == expected
    assert moment("from", date(2024, 3, 1)) == expected


def test_view_parameters__text_query_values_are_accepted_as_the_api_passes_them():
    document = views.paths_view(POPULATION, top="5", collapse_repeats="false", lookback_days="7")

    assert (document["top"], document["collapse_repeats"], document["lookback_days"]) == (5, False, 7.0)


def test_view_parameters__the_error_reads_as_field_and_reason():
    error = ViewParameterError("top", "must be between 1 and 1000000, got 0")

    assert error.as_dict() == {"field": "top", "reason": "must be between 1 and 1000000, got 0"}
    assert str(error) == "top: must be between 1 and 1000000, got 0"
