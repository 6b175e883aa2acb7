"""The one check every maintained view passes: after any sequence of changes, its
aggregate's document is byte-identical to the view's definition on the same population.

``assert_maintained_like_defined`` folds a log in batches (so groups are added, changed,
re-rooted by links and merges, and emptied), and after every batch compares the
aggregate's document with the definition's, both serialised by orjson (the API's bytes).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

from application.demo import generate
from events.logged import LoggedEvent
from events.registry import REGISTRY
from projections.aggregates import MaintainedViews
from projections.aggregates.base import ContributionAggregate
from projections.population import Population, evolve

RECORDED_AT = datetime(2030, 1, 1, tzinfo=timezone.utc)


def demo_log(customers: int, seed: int) -> list[LoggedEvent]:
    """The demo generator's events for ``customers`` people, validated and positioned."""
    logged = []
    for position, body in enumerate(generate(customers, seed), start=1):
        event = REGISTRY.validate(body)
        logged.append(LoggedEvent(position * 10, RECORDED_AT, event.stream, event))
    return logged


def spec_log(events: Iterable[Any]) -> list[LoggedEvent]:
    """Events built with ``tests.projections.spec``'s factories, positioned in order."""
    from tests.projections.spec import logged

    return logged(list(events))


def assert_maintained_like_defined(
    aggregate: ContributionAggregate,
    definition: Callable[..., dict],
    params: Mapping[str, Any],
    log: Sequence[LoggedEvent],
    *,
    seed: int = 0,
    batches: int = 8,
) -> None:
    """Given ``aggregate`` attached to a population, when ``log`` is folded in random
    batches, then after each batch the aggregate renders what ``definition`` computes."""
    assert aggregate.answers(params), f"{type(aggregate).__name__} does not answer {dict(params)}"
    population = Population()
    population.summaries.maintain(MaintainedViews([aggregate]))
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(log)), min(batches - 1, max(len(log) - 1, 0)))) if len(log) > 1 else []
    start = 0
    for end in [*cuts, len(log)]:
        for entry in log[start:end]:
            evolve(population, entry)
        start = end
        expected = orjson.dumps(definition(population, **params), option=orjson.OPT_SORT_KEYS)
        population.summaries.refresh()
        actual = orjson.dumps(aggregate.document(population, params), option=orjson.OPT_SORT_KEYS)
        assert actual == expected, f"after {end} of {len(log)} events:\n{actual[:2000]!r}\n!=\n{expected[:2000]!r}"
