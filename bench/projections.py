"""bench/projections: folding a generated log through every projection, then the views.

A seeded generator writes a log of >= 1,000,000 events (scale 1.0) over ~100k
identity groups: touches on ten channels and thirty campaigns, several
anonymous identities per person linked before or after their touches, orders,
refunds, merges, consent changes, conflicting links, late events (positions
follow arrival, not occurred_at) and redelivered duplicates. Events are
decoded through the registry BEFORE timing. Then, in one run:

* the full fold (``application.fold.LogFold``: ``evolve`` per event, the cyclic garbage
  collector paused as the application's shells do) beside a minimal fold over the same decoded
  events that only records each identity's first touch (one dict lookup per
  event, also one function call per event, run the same way) -- target >= 0.25x;
  for reference, ``evolve`` called per event with the collector running;
* all views once after the fold (groups summarised lazily here);
* memory per group (RSS growth over the fold, and with the group summaries);
* the conversion paths of 100,000 conversions (and 50,000 prospects) built from
  freshly summarised groups, then every attribution model over them
  (``attribute``) -- target < 2 s each.
"""

from __future__ import annotations

import gc
import random
import time
from datetime import datetime, timedelta, timezone
from uuid import UUID

import orjson

from application.collector import collector_paused
from application.fold import LogFold
from bench.common import Row
from events.logged import LoggedEvent
from events.registry import REGISTRY
from projections import multi_touch, views
from projections import population as population_module
from projections.attribution import MODELS, attribute
from projections.population import conversion_paths

BENCH = "projections"
SEED = 20240101
START = datetime(2022, 1, 1, tzinfo=timezone.utc)
RECORDED = datetime(2025, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)
CHANNELS = (
    "instagram", "facebook", "google", "email", "newsletter", "store", "support", "tiktok", "youtube", "affiliate",
)
TOUCH_TYPES = ("page_viewed", "ad_clicked", "social_engaged", "email_opened", "store_visited")
CAMPAIGNS = tuple(f"campaign-{n:02d}" for n in range(30))
MIB = 2**20


class LogGenerator:
    """Wire-format event bodies for one person at a time, reproducible from a seed."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.ids = 0
        self.bodies: list[tuple[float, dict]] = []  # (arrival, body)

    def body(self, type_: str, at: datetime, **fields: object) -> None:
        self.ids += 1
        body = {"event_id": str(UUID(int=self.ids)), "type": type_, "occurred_at": at.isoformat(), **fields}
        late = self.rng.random() < 0.05
        arrival = at.timestamp() + (self.rng.uniform(3600, 90 * 86400) if late else self.rng.uniform(0, 60))
        self.bodies.append((arrival, body))

    def person(self, n: int, touches: int, converts: bool) -> None:
        rng = self.rng
        customer = f"c{n}" if converts or rng.random() < 0.3 else None
        anons = [f"a{n}-{k}" for k in range(rng.choice((1, 1, 2, 3)))]
        first = START + timedelta(seconds=rng.uniform(0, 900 * 86400))
        moment = first
        for _ in range(touches):
            anonymous = customer is None or rng.random() < 0.7
            who = {"anonymous_id": rng.choice(anons)} if anonymous else {"customer_id": customer}
            channel = rng.choice(CHANNELS)
            campaign = rng.choice(CAMPAIGNS) if rng.random() < 0.6 else None
            fields = {"channel": channel, **({"campaign": campaign} if campaign else {}), **who}
            self.body(rng.choice(TOUCH_TYPES), moment, **fields)
            moment += timedelta(seconds=rng.expovariate(1 / (6 * 86400)))
        if customer is not None:
            for anon in anons:
                linked_at = first + timedelta(days=rng.uniform(0, 60))
                self.body("identity_linked", linked_at, customer_id=customer, anonymous_id=anon)
            if rng.random() < 0.002:  # a shared device: the anonymous id also claimed by a neighbour
                self.body("identity_linked", moment, customer_id=f"c{n + 1}", anonymous_id=anons[0])
            if rng.random() < 0.01:  # a duplicate customer record, merged later
                self.body("page_viewed", first, customer_id=f"{customer}-dup", channel=rng.choice(CHANNELS))
                merged = {"duplicate_customer_id": f"{customer}-dup"}
                self.body("customers_merged", moment, customer_id=customer, data=merged)
            if rng.random() < 0.2:
                choice = {"purpose": "marketing", "granted": rng.random() < 0.8}
                self.body("consent_changed", first, customer_id=customer, data=choice)
        if converts:
            orders = rng.choice((1, 1, 1, 2, 3))
            for k in range(orders):
                moment += timedelta(seconds=rng.expovariate(1 / (20 * 86400)))
                revenue = f"{rng.uniform(5, 400):.2f}"
                data = {"order_id": f"o{n}-{k}", "revenue": revenue, "currency": "EUR"}
                self.body("order_placed", moment, customer_id=customer, data=data)
                if rng.random() < 0.08:
                    refund = {"order_id": f"o{n}-{k}", "amount": revenue}
                    self.body("order_refunded", moment + timedelta(days=3), customer_id=customer, data=refund)

    def logged(self) -> list[LoggedEvent]:
        """Decode every body through the registry, positions in arrival order (gaps
        of 3, like a store's), with 0.5% redelivered."""
        self.bodies.sort(key=lambda item: item[0])
        out = []
        position = 0
        for arrival, body in self.bodies:
            event = REGISTRY.decode_json(orjson.dumps(body))
            position += 3
            entry = LoggedEvent(position, RECORDED + timedelta(seconds=position), event.stream, event)
            out.append(entry)
            if self.rng.random() < 0.005:
                out.append(entry)
        return out


def generate_log(events: int, groups: int, seed: int = SEED) -> list[LoggedEvent]:
    """At least ``events`` decoded events, people added until there are, about
    ``groups`` of them; a third of them order."""
    generator = LogGenerator(seed)
    per_group = max(1, round(events / groups) - 2)
    n = 0
    while len(generator.bodies) < events:
        touches = max(1, min(4 * per_group, round(generator.rng.expovariate(1 / per_group))))
        generator.person(n, touches, generator.rng.random() < 0.33)
        n += 1
    return generator.logged()


def generate_conversions(conversions: int, prospects: int, seed: int = SEED + 1) -> list[LoggedEvent]:
    generator = LogGenerator(seed)
    for n in range(conversions + prospects):
        generator.person(n, generator.rng.randint(1, 8), n < conversions)
    return generator.logged()


def first_touch_evolve(state: dict, logged: LoggedEvent) -> dict:
    """The minimal fold: each identity's first touch, one dict lookup per event."""
    event = logged.event
    if event.KIND == "touch":
        key = logged.stream
        first = state.get(key)
        if first is None or event.occurred_at < first[0]:
            state[key] = (event.occurred_at, event.channel)
    return state


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096 / 2**20


def minimal_fold(events: list[LoggedEvent]) -> dict:
    """The baseline, run the way the full fold runs: the cyclic collector paused."""
    state: dict = {}
    fold_one = first_touch_evolve
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for logged in events:
            state = fold_one(state, logged)
    finally:
        if was_enabled:
            gc.enable()
    return state


def _evolve_each(events: list[LoggedEvent]) -> population_module.Population:
    state = population_module.initial_state()
    for logged in events:
        state = population_module.evolve(state, logged)
    return state


def _paused_fold(events: list[LoggedEvent]) -> population_module.Population:
    folded = LogFold()  # the fold shell: evolve per event, the cyclic collector paused
    folded.fold(events)
    return folded.population


def _timed(fold, events):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    state = fold(events)
    return state, time.perf_counter() - started


def run(scale: float) -> list[Row]:
    rows: list[Row] = []
    total = max(10_000, int(1_000_000 * scale))
    groups = max(1_000, int(100_000 * scale))
    log = generate_log(total, groups)
    # The pre-decoded log is the input, not the fold's state: freeze it so the cyclic
    # collector does not rescan a million events during either fold (same for both).
    gc.collect()
    gc.freeze()
    try:
        rows.extend(_fold_rows(log))
    finally:
        gc.unfreeze()
    del log
    gc.collect()
    rows.extend(_attribution_rows(max(1_000, int(100_000 * scale))))
    return rows


def _fold_rows(log: list[LoggedEvent]) -> list[Row]:
    minimal_seconds = min(_timed(minimal_fold, log)[1] for _ in range(3))
    minimal_rate = len(log) / minimal_seconds
    gc.collect()
    rss_before = _rss_mib()
    population, first_seconds = _timed(_paused_fold, log)
    rss_fold = _rss_mib()
    fold_seconds = [first_seconds]
    for _ in range(2):  # best of three, like the baseline (each run folds into a fresh state)
        del population
        gc.collect()
        population, seconds = _timed(_paused_fold, log)
        fold_seconds.append(seconds)
    full_rate = len(log) / min(fold_seconds)
    _, evolve_seconds = _timed(_evolve_each, log)
    rows = [
        Row(BENCH, f"full fold, {len(log):,} events (application.fold, best of 3)", full_rate, "events/s",
            "minimal first-touch fold", minimal_rate, ">= 0.25x", full_rate / minimal_rate >= 0.25),
        Row(BENCH, "  for reference: evolve per event, cyclic GC running", len(log) / evolve_seconds, "events/s",
            "minimal first-touch fold", minimal_rate),
    ]
    started = time.perf_counter()
    with collector_paused():  # as the live views and the audit compute them
        documents = views.all_views(population, now=NOW)
    first_views = time.perf_counter() - started
    groups = documents["funnel"]["groups"]
    rss_views = _rss_mib()
    started = time.perf_counter()
    with collector_paused():
        views.all_views(population, now=NOW)
    cached_views = time.perf_counter() - started
    rows += [
        Row(BENCH, f"all views once after the fold ({groups:,} groups)", first_views * 1000, "ms"),
        Row(BENCH, "all views again (group summaries cached)", cached_views * 1000, "ms"),
        Row(BENCH, "memory per group: fold state (RSS growth)", (rss_fold - rss_before) * MIB / groups, "bytes"),
        Row(BENCH, "memory per group: plus summaries and caches", (rss_views - rss_before) * MIB / groups, "bytes"),
    ]
    return rows


def _attribution_rows(conversions: int) -> list[Row]:
    population = _paused_fold(generate_conversions(conversions, conversions // 2))
    with collector_paused():
        population.groups()
    gc.collect()
    started = time.perf_counter()
    every_path = conversion_paths(population, include_non_converting=True)
    built = time.perf_counter() - started
    converting = conversion_paths(population, include_non_converting=False)  # the same Path objects
    rows = [
        Row(BENCH, f"conversion paths from fresh groups ({len(converting):,} conversions, "
            f"{len(every_path) - len(converting):,} prospects)", built, "s", target="< 2 s", ok=built < 2.0)
    ]
    for model in MODELS:
        paths = every_path if model in multi_touch.READS_NON_CONVERTING else converting
        started = time.perf_counter()
        with collector_paused():  # as the live views run the models
            result = attribute(paths, model)
        seconds = time.perf_counter() - started
        conversions_seen = result.conversions + result.unattributed_conversions
        rows.append(
            Row(BENCH, f"{model} over {conversions_seen:,} conversions", seconds, "s", target="< 2 s", ok=seconds < 2.0)
        )
    return rows
