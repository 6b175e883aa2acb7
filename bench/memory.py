"""bench/memory: what holds the API/views process's memory, holder by holder.

The population of ``scale`` x 1,000,000 demo customers (the journeys snapshot
``bench/maintained`` caches) is loaded into live views as the view feed loads it
(``apply_journeys`` in batches, then every default document), once with the journeys in
memory and once in a file (``journeys_folder``: what the platform runs), each in a fresh
process. For each: RSS above the imports, and the deep size of each holder (objects
reachable from it and from no holder before it: the identity graph, the aggregates' kept
contributions, the journeys, the group cache, the groups' slots the aggregates share, then
each maintained aggregate's totals and columns),
in bytes per customer. Only a breakdown: the issue's target (API <= 1.5 GiB at 1M
customers) is for the whole API process, store caches included (``bench/pipeline``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from array import array
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from bench.common import Row

SEED = 11
FULL_CUSTOMERS = 1_000_000
BATCH = 10_000  # journeys per apply_journeys, as the view feed's batches


def log(message: str) -> None:
    print(f"  [memory] {message}", file=sys.stderr, flush=True)


def run(scale: float) -> list[Row]:
    from bench.views import build_views, population_snapshot

    customers = max(1000, int(FULL_CUSTOMERS * scale))
    snapshot = population_snapshot(customers, SEED)
    if not snapshot.exists():
        build_views(customers, SEED, snapshot)  # folds and saves the snapshot (in this process: then exits)
    rows = []
    for where in ("memory", "file"):
        started = time.perf_counter()
        found = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--measure", where, str(snapshot), str(customers)],
            check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
        )
        measured = json.loads(found.stdout)
        log(f"journeys in {where}: {time.perf_counter() - started:.0f} s, RSS {measured['rss_mib']:.0f} MiB")
        label = f"journeys in {where}, {customers:,} customers"
        rows.append(Row("memory", f"{label}: RSS of the process", measured["rss_mib"], "MiB"))
        rows.append(Row("memory", f"{label}: RSS above the imports, per customer",
                        measured["above_imports"] / customers, "bytes"))
        for holder, size in measured["holders"].items():
            rows.append(Row("memory", f"{label}: {holder}, per customer", size / customers, "bytes"))
    return rows


def measure(where: str, snapshot: Path, customers: int) -> dict:
    import gc

    from application.live_views import LiveViews
    from projections.journey import IdentityJourney

    gc.collect()
    before = _rss_mib()
    header = json.loads(snapshot.with_suffix(".json").read_text())
    folder = snapshot.parent / f"memory-{where}"
    views = LiveViews(background=False, journeys_folder=folder if where == "file" else None)
    batch = []
    with snapshot.open("rb") as file:
        while size := file.read(4):
            journey = IdentityJourney.from_bytes(file.read(int.from_bytes(size, "big")))
            batch.append((journey.key, journey))
            if len(batch) == BATCH:
                views.apply_journeys(batch)
                batch = []
    views.apply_journeys(batch)
    views.restore((), position=header["position"], data_time=header["data_time"])
    views.all_documents()
    gc.collect()
    rss = _rss_mib()
    population = views.population
    cache = population.summaries
    seen: set[int] = set()
    maintained = cache.maintained
    holders = {
        "identity graph": _deep([population.graph], seen),
        # before the journeys, whose file holds them when they are in one, and the totals, which share their objects
        # (in memory: a list by slot an aggregate; in the file: the rows held decoded)
        # the file's rows held decoded, and the lists by slot of those kept in memory (not the aggregates beside them)
        "kept contributions": _deep([store for store, _ in maintained._kept_in], seen),
        "journeys": _deep([population.journeys], seen),
        "group cache": _deep([getattr(cache, name) for name in ("_summaries", "_results", "_group_results")], seen),
    }
    holders["group slots (shared by the aggregates)"] = _deep([maintained.slots], seen)
    for aggregate in maintained._aggregates:
        holders[f"{type(aggregate).__name__}: totals and columns"] = _deep([aggregate], seen)
    holders["view documents"] = _deep([views._cache], seen)
    return {"rss_mib": rss, "above_imports": (rss - before) * 2**20, "holders": holders}


_LEAVES = (str, bytes, int, float, bool, datetime, array, type(None))


def _deep(roots: Iterable[object], seen: set[int]) -> int:
    """Bytes of the objects reachable from ``roots`` not in ``seen`` (added to it)."""
    import numpy as np

    total = 0
    stack = list(roots)
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type) or callable(item) and not hasattr(item, "__slots__"):
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, np.ndarray):  # getsizeof counts the buffer of an array that owns it
            if item.base is not None:
                stack.append(item.base)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif not isinstance(item, _LEAVES):
            if hasattr(item, "__dict__"):
                stack.append(item.__dict__)
            for klass in type(item).__mro__:
                slots = klass.__dict__.get("__slots__", ())
                for slot in (slots,) if isinstance(slots, str) else slots:
                    if slot not in ("__dict__", "__weakref__") and hasattr(item, slot):
                        stack.append(getattr(item, slot))
    return total


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))))
