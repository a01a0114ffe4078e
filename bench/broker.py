"""Broker, fleet and reducer benchmarks, printed side by side in one run.

    python -m bench.broker                 # every section
    python -m bench.broker --only reducer  # one section
    python -m bench.broker --quick         # smaller sizes, for a smoke run

Each section module exposes rows(quick) -> list[Row]; a Row is
(what, figure, comparison) where comparison holds the baseline and the ratio.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

Row = tuple[str, str, str]

# section name -> module under bench/; each owns one set of figures.
SECTIONS = {
    "modal": "bench.modal",
    "fleet": "bench.broker_fleet",
    "reducer": "bench.reducer",
    "redis": "bench.broker_redis",
    "sqlite": "bench.broker_sqlite",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run")
    args = parser.parse_args(argv)
    print(f"# golfq bench/broker.py  python {platform.python_version()}  {platform.machine()}  "
          f"cpus={_cpus()}  {time.strftime('%Y-%m-%d %H:%M')}")
    for name in args.only or list(SECTIONS):
        started = time.perf_counter()
        rows = importlib.import_module(SECTIONS[name]).rows(args.quick)
        print(f"\n## {name}  ({time.perf_counter() - started:.1f} s)")
        width = max(len(r[0]) for r in rows)
        for what, figure, comparison in rows:
            print(f"{what:<{width}}  {figure:>14}  {comparison}")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
