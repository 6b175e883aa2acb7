"""``python -m bench [NAME ...] [--scale S]``: run benchmarks, print one table."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from bench.common import format_table

ALL = ["ingest", "projections", "stream", "views", "maintained", "restart", "replay", "pipeline", "tracking", "sealing"]
LONG = ["million"]  # tens of minutes: run only when named (python -m bench million)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", default=ALL,
                        help=f"benchmarks to run (default: {' '.join(ALL)}; only when named: {' '.join(LONG)})")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full data size (default 1.0)")
    args = parser.parse_args()
    rows = []
    for name in args.names:
        started = time.perf_counter()
        print(f"running bench/{name} ...", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(f"bench.{name}").run(args.scale))
        print(f"  bench/{name} took {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(format_table(rows))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
