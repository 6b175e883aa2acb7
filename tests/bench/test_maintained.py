"""bench/maintained at its smallest size: it runs, and its equality row checks something."""

from __future__ import annotations

from bench import maintained


def test_maintained_bench__measures_and_finds_the_maintained_documents_equal_the_definitions(tmp_path, monkeypatch):
    # given a private cache, when the bench runs at its smallest size (1,000 customers)
    monkeypatch.setenv("TOUCHPOINTS_BENCH_CACHE", str(tmp_path))
    rows = {row.case: row for row in maintained.run(0.0001)}

    # then every figure is measured, the queries' 1M target is not judged at this size,
    # and the maintained documents equal the definitions'
    assert rows["maintained documents equal the definitions'"].ok is True
    assert all(row.value >= 0 for row in rows.values())
    queries = [row for case, row in rows.items() if case.startswith("columns: attribution")]
    assert queries and all(row.ok is None and row.baseline_value > 0 for row in queries)
