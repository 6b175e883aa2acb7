"""CSV and text-table rendering of view documents (shared by the API and the CLI)."""

from __future__ import annotations

import csv
import io

import pytest

from application.exports import NotAListView, to_csv, to_table

ATTRIBUTION = {
    "model": "linear",
    "conversions": 3,
    "value": 150.0,
    "rows": [{"channel": "instagram", "conversions": 2.5, "value": 125.0},
             {"channel": "email", "conversions": 0.5, "value": 25.0}],
}


def read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv__one_header_line_then_one_line_per_row():
    assert read(to_csv(ATTRIBUTION)) == [
        ["channel", "conversions", "value"], ["instagram", "2.5", "125.0"], ["email", "0.5", "25.0"],
    ]


def test_csv__nested_fields_become_dotted_columns():
    document = {"rows": [{"first_channel": "tiktok", "histogram": {"same_day": 1, "1-7d": 2}}]}

    assert read(to_csv(document)) == [["first_channel", "histogram.same_day", "histogram.1-7d"], ["tiktok", "1", "2"]]


def test_csv__a_path_is_joined_with_arrows():
    document = {"rows": [{"path": ["instagram", "email", "direct"], "conversions": 4}]}

    assert read(to_csv(document))[1] == ["instagram > email > direct", "4"]


def test_csv__rows_with_different_fields_share_the_union_of_columns():
    document = {"events": [{"type": "page_viewed", "data": {"url": "/"}},
                           {"type": "order_placed", "data": {"order_id": "o-1"}}]}

    assert read(to_csv(document, preferred_rows="events")) == [
        ["type", "data.url", "data.order_id"], ["page_viewed", "/", ""], ["order_placed", "", "o-1"],
    ]


def test_csv__text_that_a_spreadsheet_would_run_as_a_formula_is_quoted_inert():
    document = {"rows": [{"campaign": "=HYPERLINK(\"http://evil\")", "conversions": -1.5}]}

    assert read(to_csv(document))[1] == ["'=HYPERLINK(\"http://evil\")", "-1.5"]


def test_csv__a_document_without_rows_is_refused():
    with pytest.raises(NotAListView):
        to_csv({"count": 3, "currencies": {"EUR": 3}})


def test_table__shows_the_summary_then_aligned_rows():
    text = to_table(ATTRIBUTION, title="Attribution")

    lines = text.splitlines()
    assert lines[:3] == ["Attribution", "===========", "model: linear"]
    assert "rows (2)" in lines
    header = lines[lines.index("rows (2)") + 1]
    assert header.split() == ["channel", "conversions", "value"]
    assert lines[-1].split() == ["email", "0.5", "25"]


def test_table__every_nested_list_of_objects_gets_its_own_table():
    document = {"rows": [{"a": 1}], "path_length": {"mean": 2.0, "distribution": [{"touches": 1, "customers": 9}]}}

    text = to_table(document)

    assert "path_length.mean: 2" in text
    assert "path_length.distribution (1)" in text


def test_table__an_empty_main_list_says_none():
    assert "(none)" in to_table({"rows": []})
