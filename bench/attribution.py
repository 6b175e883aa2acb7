"""Timing of the attribution models (called by bench/projections; not in ``bench.__main__.ALL``).

``python -m bench.attribution [--conversions N] [--non-converting N] [--seed S]``
prints the table for 100,000 conversions and 100,000 non-converting paths.
The baseline is one minimal pass over the same paths in the same run: folding
identical paths with a Counter, which every model starts with.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from collections.abc import Sequence

from bench.common import Row, format_table
from projections.attribution import MODELS, Path, attribute

TARGET_SECONDS_PER_100K = 2.0

# (channel, share of touches on converting paths, share on non-converting paths)
CHANNELS = (
    ("paid_search", 0.20, 0.12),
    ("organic_search", 0.15, 0.10),
    ("email", 0.14, 0.06),
    ("direct", 0.10, 0.05),
    ("paid_social", 0.09, 0.16),
    ("display", 0.05, 0.18),
    ("organic_social", 0.07, 0.09),
    ("affiliate", 0.06, 0.04),
    ("referral", 0.05, 0.04),
    ("video", 0.04, 0.08),
    ("sms", 0.03, 0.03),
    ("podcast", 0.02, 0.05),
)


def generate_paths(n_conversions: int, n_non_converting: int, seed: int = 0) -> list[Path]:
    """Deterministic synthetic journeys: channels that convert differently, repeats, ages, values.

    About 3 % of the conversions have no touch (unattributed). Paths have 1-12
    touches (geometric), a channel is repeated with probability 0.3, touches
    are spread over weeks before the conversion (or the window end).
    """
    rng = random.Random(seed)
    names = [c for c, _, _ in CHANNELS]
    converting_weights = [w for _, w, _ in CHANNELS]
    non_converting_weights = [w for _, _, w in CHANNELS]
    paths: list[Path] = []
    for _ in range(n_conversions):
        if rng.random() < 0.03:
            paths.append(Path((), True, round(rng.lognormvariate(4.0, 0.6), 2)))
            continue
        touches = _touches(rng, names, converting_weights, last_age=rng.expovariate(1.0))
        paths.append(Path(touches, True, round(rng.lognormvariate(4.0, 0.6), 2)))
    for _ in range(n_non_converting):
        paths.append(Path(_touches(rng, names, non_converting_weights, last_age=0.0), False, 0.0))
    rng.shuffle(paths)
    return paths


def _touches(
    rng: random.Random, names: list[str], weights: list[float], last_age: float
) -> tuple[tuple[str, float], ...]:
    length = 1
    while length < 12 and rng.random() < 0.55:
        length += 1
    labels: list[str] = []
    for _ in range(length):
        if labels and rng.random() < 0.3:
            labels.append(labels[-1])
        else:
            labels.append(rng.choices(names, weights)[0])
    ages = [last_age]
    for _ in range(length - 1):
        ages.append(ages[-1] + rng.expovariate(1 / 5.0))
    ages.reverse()
    return tuple((label, round(age, 4)) for label, age in zip(labels, ages))


def time_models(paths: Sequence[Path]) -> list[Row]:
    """Time each model once over ``paths``, beside a Counter fold of the same paths."""
    conversions = sum(1 for p in paths if p.converted)
    started = time.perf_counter()
    Counter(p.touches for p in paths)
    baseline_ms = (time.perf_counter() - started) * 1000
    limit_ms = TARGET_SECONDS_PER_100K * 1000 * max(1.0, conversions / 100_000)
    rows = []
    for model in MODELS:
        started = time.perf_counter()
        attribute(paths, model)
        elapsed_ms = (time.perf_counter() - started) * 1000
        rows.append(
            Row(
                bench="projections",
                case=f"attribution {model}, {conversions:,} conversions + {len(paths) - conversions:,} non-converting",
                value=elapsed_ms,
                unit="ms",
                baseline="Counter fold of the paths",
                baseline_value=baseline_ms,
                target=f"< {limit_ms / 1000:g} s",
                ok=elapsed_ms < limit_ms,
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attribution")
    parser.add_argument("--conversions", type=int, default=100_000)
    parser.add_argument("--non-converting", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = time_models(generate_paths(args.conversions, args.non_converting, args.seed))
    print(format_table(rows))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
