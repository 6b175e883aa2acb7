"""Shared shape of every benchmark: rows of one table, each beside its baseline.

A benchmark module ``bench/<name>.py`` exposes ``run(scale: float) -> list[Row]``
(``scale`` 1.0 is the full size the issue asks for; ``make bench-quick`` uses
less). Ratios are measured against a baseline run in the same process, so they
hold across machines while absolute figures drift.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass


@dataclass
class Row:
    bench: str  # e.g. "ingest"
    case: str  # what was measured
    value: float
    unit: str  # "events/s", "ms", "MiB"...
    baseline: str = ""  # the baseline's name
    baseline_value: float | None = None
    target: str = ""  # e.g. ">= 0.5x" or "< 10 ms"
    ok: bool | None = None  # target met? None where there is no target

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value


def peak_rss_mib() -> float:
    """Peak resident memory of this process (and waited-for children are separate)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_table(rows: list[Row]) -> str:
    header = ["bench", "case", "value", "unit", "baseline", "ratio", "target", "met"]
    lines = [header]
    for r in rows:
        lines.append(
            [
                r.bench,
                r.case,
                _num(r.value),
                r.unit,
                f"{r.baseline} = {_num(r.baseline_value)}" if r.baseline else "",
                f"{r.ratio:.2f}x" if r.ratio is not None else "",
                r.target,
                {True: "yes", False: "NO", None: ""}[r.ok],
            ]
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"
