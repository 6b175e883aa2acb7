"""bench/maintained: what a change costs the default views, maintained vs recomputed.

The population of ``scale`` x 1,000,000 demo customers is built as ``bench/views`` builds
it (cached journeys snapshot). Then, in the same process:

- baseline: every default document computed by its definition (``projections.views``,
  what a refresh cost before the views were maintained): a walk of every group per view;
- the aggregates' bootstrap (every group's contribution, once at start);
- a refresh of every default document after 1,000 and after 10,000 identities changed
  (their journeys replaced, so their groups are summarised again, their old contributions
  subtracted and their new ones added): the work per burst under live ingest;
- each of the two, checked: the maintained documents equal the definitions' (digests).

Ratios are to the baseline. The issue's target is freshness within 2 s at 1M customers
under 5,000 events/s; a refresh after a burst bounds it from below.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from bench.common import Row, peak_rss_mib

SEED = 11
FULL_CUSTOMERS = 1_000_000


def log(message: str) -> None:
    print(f"  [maintained] {message}", file=sys.stderr, flush=True)


def run(scale: float) -> list[Row]:
    from application.live_views import LiveViews
    from application.replay_report import digest
    from bench.views import build_views, cache_dir

    customers = max(1000, int(FULL_CUSTOMERS * scale))
    cache_dir().mkdir(parents=True, exist_ok=True)
    snapshot = cache_dir() / f"maintained-{customers}-{SEED}.journeys"
    started = time.perf_counter()
    built, events, how = build_views(customers, SEED, snapshot)
    log(f"{customers:,} customers ({events:,} events) from {how} in {time.perf_counter() - started:.0f} s")
    journeys = list(built.population.journeys.items())
    position, data_time, _ = built.position, built.now(), None
    del built

    plain = LiveViews(background=False, maintain_views=False)
    plain.restore(journeys, position=position, data_time=data_time.isoformat())
    plain.population.summaries.refresh()
    started = time.perf_counter()
    defined = plain.all_documents()
    recompute = time.perf_counter() - started
    log(f"definitions: {recompute:.2f} s for every default document")
    del plain

    maintained = LiveViews(background=False, maintain_views=False)
    maintained.restore(journeys, position=position, data_time=data_time.isoformat())
    maintained.population.summaries.refresh()
    from projections.aggregates import MaintainedViews

    started = time.perf_counter()
    maintained.population.summaries.maintain(MaintainedViews.default())
    bootstrap = time.perf_counter() - started
    log(f"bootstrap: {bootstrap:.2f} s")
    same = {name: digest(document) for name, document in maintained.all_documents().items()} == {
        name: digest(document) for name, document in defined.items()
    }
    rows = [
        Row("maintained", f"definitions: every default document ({customers:,} customers)", recompute * 1000, "ms"),
        Row("maintained", "aggregates: bootstrap from every group", bootstrap * 1000, "ms",
            "definitions", recompute * 1000),
    ]
    rng = random.Random(SEED)
    for changed in (1_000, 10_000):
        sample = rng.sample(journeys, min(changed, len(journeys)))
        maintained.apply_journeys(sample)
        started = time.perf_counter()
        documents = maintained.all_documents()
        seconds = time.perf_counter() - started
        log(f"refresh after {changed:,} changed identities: {seconds * 1000:.0f} ms")
        same = same and {name: digest(d) for name, d in documents.items()} == {
            name: digest(d) for name, d in defined.items()
        }
        rows.append(Row("maintained", f"aggregates: every default document after {changed:,} identities changed",
                        seconds * 1000, "ms", "definitions", recompute * 1000))
    rows.append(Row("maintained", "maintained documents equal the definitions'", 1.0 if same else 0.0, "bool",
                    target="1", ok=same))
    rows.append(Row("maintained", "peak RSS of this process", peak_rss_mib(), "MiB"))
    return rows
