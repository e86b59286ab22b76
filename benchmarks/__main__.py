"""``python -m benchmarks``: the benchmark suite's one entry point.

    python -m benchmarks run --list                      # the scenarios, one line each
    python -m benchmarks run SCENARIO [--quick] [--set key=value ...]
    python -m benchmarks check                           # every scenario's parameters against its runner
    python -m benchmarks index                           # rewrite benchmarks/results/README.md

Exit 0: done (every bar met); 2: bad input (unknown scenario, parameter); 3: measured, but a bar was missed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks.schema import RESULTS, load_result, load_scenarios
from edgekit.errors import EXIT_GATE_FAILED, EXIT_USER_ERROR, EdgekitError


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs, each value read as YAML (``threads=2``, ``round_to=[[null, 8]]``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EdgekitError(f"--set {item!r} is not key=value", "e.g. --set threads=2")
        out[key.strip()] = yaml.safe_load(value)
    return out


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2``."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 0,1,2") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed, e.g. 0,1,2")
    return seeds


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario (or --list them)")
    run.add_argument("scenario", nargs="?", help="a scenario name from benchmarks/scenarios.yaml")
    run.add_argument("--list", action="store_true", help="list the scenarios with a one-line description each")
    run.add_argument("--quick", action="store_true", help="the scenario's smoke variant (its quick: parameters); "
                     "stored as <host>-quick, never over a full result")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one of the scenario's parameters (repeatable)")
    run.add_argument("--seeds", type=parse_seeds, default=None, metavar="0,1,2",
                     help="repeat over these seeds (mean, min-max and the worst run) [default: the scenario's seeds]")
    run.add_argument("--results", type=Path, default=RESULTS, help="results folder [default: benchmarks/results]")
    sub.add_parser("check", help="check every scenario's parameters against its runner (imports the runners)")
    index = sub.add_parser("index", help="rewrite the results index (README.md)")
    index.add_argument("--results", type=Path, default=RESULTS)
    return p


def list_scenarios() -> None:
    table = load_scenarios()
    width = max(len(s.name) for s in table.scenarios)
    for s in table.scenarios:
        print(f"{s.name:<{width}}  {s.kind:<20} {s.description}" + ("" if s.quick is None else "  [--quick]"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    from benchmarks import runner

    if args.command == "index":
        print(runner.write_index(args.results))
        return 0
    if args.command == "check":
        table = load_scenarios()
        for s in table.scenarios:
            runner.check_params(s, seeds=s.seeds)
            if s.quick is not None:
                runner.check_params(s, quick=True, seeds=s.seeds_for(True))
        print(f"{len(table.scenarios)} scenarios: parameters match their runners")
        return 0
    if args.list:
        list_scenarios()
        return 0
    if not args.scenario:
        raise EdgekitError("run needs a scenario name", "python -m benchmarks run --list shows them")
    path = runner.run_scenario(args.scenario, args.quick, parse_set(args.overrides), args.results,
                               seeds=args.seeds, command="python -m benchmarks " + shlex.join(argv))
    result = load_result(path)
    missed = [b.name for b in result.bars if not b.met]
    print(f"{path} ({len(result.bars) - len(missed)} of {len(result.bars)} bars met"
          + (f"; missed: {', '.join(missed)}" if missed else "") + ")")
    return EXIT_GATE_FAILED if missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgekitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
