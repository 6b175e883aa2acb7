"""Given / when / then for the attribution models.

``given(converted("a", "b", value=30), prospect("c")).when("linear")`` runs the
model and returns its `Attribution`; ``then_credits(result, {"a": (0.5, 15.0)})``
checks every label's (conversion, value) credit to 1e-12. Touches are labels
(ages then count down to 1 day before the conversion) or (label, age_days) pairs.
"""

from __future__ import annotations

import pytest

from projections.attribution import Attribution, Path, attribute


def _touches(touches: tuple) -> tuple[tuple[str, float], ...]:
    if all(isinstance(t, str) for t in touches):
        return tuple((label, float(len(touches) - i)) for i, label in enumerate(touches))
    return tuple((label, float(age)) for label, age in touches)


def converted(*touches, value: float = 100.0) -> Path:
    return Path(_touches(touches), True, float(value))


def prospect(*touches) -> Path:
    return Path(_touches(touches), False, 0.0)


class given:
    def __init__(self, *paths: Path) -> None:
        self.paths = list(paths)

    def when(self, model: str, **options: float) -> Attribution:
        return attribute(self.paths, model, **options)


def then_credits(result: Attribution, expected: dict[str, tuple[float, float]]) -> None:
    assert result.credits.keys() == expected.keys()
    for label, (conversions, value) in expected.items():
        assert result.credits[label] == (
            pytest.approx(conversions, rel=1e-12, abs=1e-12),
            pytest.approx(value, rel=1e-12, abs=1e-12),
        ), label
