"""``python -m bench [images] [video] [worker]``: run the benchmarks, write results.json, print a
table; after both suites, refresh deploy/ecs/sizing.json and run the scaling simulation on it;
last, price the measured work on AWS (bench.cost) and add those rows to results.json."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from bench.report import Measurement, machine, print_table, write_results

SUITES = ("images", "video", "worker")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of {', '.join(SUITES)}")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json")
    parser.add_argument("--quick", action="store_true", help="fewer inputs: a smoke run")
    args = parser.parse_args()
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(sorted(unknown))}; choose from {SUITES}")
    measurements: list[Measurement] = []
    for name in args.suites or SUITES:
        suite = importlib.import_module(f"bench.{name}")
        measurements.extend(suite.run(quick=args.quick))
        write_results(measurements, args.out)  # what finished survives a later suite's failure
    print_table(measurements, title=f"mediamill benchmarks on {machine()} -> {args.out}")
    if set(SUITES) <= set(args.suites or SUITES):
        from bench.scaling.cli import after_bench

        after_bench(measurements, quick=args.quick)
    from bench import cost

    try:
        cost.after_bench(measurements, out=args.out)  # prices whatever this run measured
    except cost.CostError as error:
        parser.exit(2, f"python -m bench: no cost table: {error}\n")


if __name__ == "__main__":
    main()
