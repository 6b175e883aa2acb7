"""Rendering view documents as CSV and as readable text tables (API and CLI share it).

A view document (``projections.views``) is a JSON-ready dict whose main list (its
*rows*) is what CSV exports: one line per row, nested objects flattened into dotted
columns (``histogram.same_day``), lists of plain values joined with `` > `` (a path
``["instagram", "email"]`` becomes ``instagram > email``), other lists as JSON.
Text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``) are prefixed with ``'`` in CSV (campaign names come from emitters).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

PATH_SEPARATOR = " > "
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class NotAListView(ValueError):
    """The document has no list of rows to export as CSV."""


def rows_key(document: Mapping[str, Any], preferred: str | None = None) -> str:
    """The key of the document's main list of rows: ``preferred`` when given and
    present, else ``rows``, else the first list of objects."""
    if preferred and isinstance(document.get(preferred), list):
        return preferred
    if isinstance(document.get("rows"), list):
        return "rows"
    for key, value in document.items():
        if isinstance(value, list) and all(isinstance(item, Mapping) for item in value):
            return key
    raise NotAListView("this view has no list of rows to export")


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """One CSV/table row: nested mappings become dotted columns."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        column = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{column}."))
        else:
            flat[column] = value
    return flat


def columns_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' columns, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        for column in row:
            seen.setdefault(column, None)
    return list(seen)


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e16 else f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        if all(not isinstance(item, (Mapping, list, tuple)) for item in value):
            return PATH_SEPARATOR.join(cell_text(item) for item in value)
        return orjson.dumps(value).decode()
    return str(value)


def to_csv(document: Mapping[str, Any], *, preferred_rows: str | None = None) -> str:
    """The document's rows as CSV (header line first; RFC 4180 quoting, ``\\r\\n`` lines)."""
    rows = [flatten(row) for row in document[rows_key(document, preferred_rows)]]
    columns = columns_of(rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_safe(row.get(column)) for column in columns])
    return out.getvalue()


def _csv_safe(value: Any) -> str:
    text = cell_text(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def to_table(document: Mapping[str, Any], *, title: str = "", preferred_rows: str | None = None) -> str:
    """A readable text rendering: the document's plain fields as ``name: value`` lines
    (nested ones dotted), then every list of objects as an aligned table, the main
    rows first."""
    lines: list[str] = [title, "=" * len(title)] if title else []
    tables: list[tuple[str, list[Mapping[str, Any]]]] = []
    try:
        main = rows_key(document, preferred_rows)
    except NotAListView:
        main = None
    _walk(document, "", main, lines, tables)
    tables.sort(key=lambda item: item[0] != main)
    for key, rows in tables:
        lines.append("")
        lines.append(f"{key} ({len(rows)})")
        lines.append(format_rows([flatten(row) for row in rows]) if rows else "(none)")
    return "\n".join(lines).rstrip() + "\n"


def _walk(
    document: Mapping[str, Any], prefix: str, main: str | None,
    lines: list[str], tables: list[tuple[str, list[Mapping[str, Any]]]],
) -> None:
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, list) and (value or name == main) and all(isinstance(i, Mapping) for i in value):
            tables.append((name, value))
        elif isinstance(value, Mapping) and value and all(_is_flat_mapping(inner) for inner in value.values()):
            tables.append((name, [{key: label, **inner} for label, inner in value.items()]))
        elif isinstance(value, Mapping):
            _walk(value, f"{name}.", main, lines, tables)
        elif isinstance(value, list):
            lines.append(f"{name}: {', '.join(cell_text(item) for item in value) or '-'}")
        else:
            lines.append(f"{name}: {_display(value)}")


def _is_flat_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and all(not isinstance(v, (Mapping, list)) for v in value.values())


def format_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as an aligned text table; numbers right-aligned."""
    columns = columns_of(rows)
    cells = [[_display(row.get(column)) for column in columns] for row in rows]
    numeric = [all(_is_number(row.get(column)) for row in rows if row.get(column) is not None) for column in columns]
    widths = [max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)]

    def render(values: Sequence[str], header: bool = False) -> str:
        parts = []
        for i, value in enumerate(values):
            parts.append(value.rjust(widths[i]) if numeric[i] and not header else value.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    out = [render(columns, header=True), render(["-" * w for w in widths], header=True)]
    out.extend(render(line) for line in cells)
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _display(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return cell_text(value) or "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"
    return cell_text(value)
