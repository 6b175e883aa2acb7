"""bench/attribution.py: the generated data set and the table rows (no timing is asserted)."""

from __future__ import annotations

from bench.attribution import generate_paths, time_models
from projections.attribution import MODELS


def test_generate_paths__gives_the_requested_counts_deterministically():
    paths = generate_paths(300, 200, seed=7)
    assert sum(p.converted for p in paths) == 300
    assert sum(not p.converted for p in paths) == 200
    assert paths == generate_paths(300, 200, seed=7)
    assert paths != generate_paths(300, 200, seed=8)


def test_generate_paths__touches_are_oldest_first_with_repeats_and_some_empty_conversions():
    paths = generate_paths(2_000, 0, seed=1)
    assert all(all(a1 >= a2 for (_, a1), (_, a2) in zip(p.touches, p.touches[1:])) for p in paths)
    assert any(p.touches[0][0] == p.touches[1][0] for p in paths if len(p.touches) > 1)
    assert 0 < sum(1 for p in paths if not p.touches) < 200


def test_time_models__one_row_per_model_beside_the_counter_baseline():
    rows = time_models(generate_paths(500, 500, seed=2))
    assert [row.case.split(",")[0] for row in rows] == [f"attribution {model}" for model in MODELS]
    assert all(row.unit == "ms" and row.value > 0 and row.baseline_value > 0 for row in rows)
    assert all(row.target == "< 2 s" and row.ok is not None for row in rows)
