"""bench/memory at its smallest size: it runs and measures every holder."""

from __future__ import annotations

from bench import memory


def test_memory_bench__breaks_both_ways_of_keeping_journeys_down_by_holder(tmp_path, monkeypatch):
    # given a private cache, when the bench runs at its smallest size (1,000 customers)
    monkeypatch.setenv("TOUCHPOINTS_BENCH_CACHE", str(tmp_path))
    rows = {row.case: row.value for row in memory.run(0.0001)}

    # then each holder is measured both ways
    for where in ("memory", "file"):
        label = f"journeys in {where}, 1,000 customers"
        assert rows[f"{label}: RSS of the process"] > 0
        for holder in ("identity graph", "journeys", "group cache", "kept contributions"):
            assert rows[f"{label}: {holder}, per customer"] > 0
