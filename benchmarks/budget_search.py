"""The latency-budget search alone (no training): how long it takes, how many levels it times and bounds away,
and what it chooses, for a list of channel-rounding sets. It is what ``edgekit compress --latency-budget-ms``
runs before training (``pipeline.run_search``), on the vs_peers ResNet-18 teacher (557 MMACs at 32 px) by
default, for the x86-cpu target measured on this host.

    PYTHONPATH=. python benchmarks/budget_search.py [--budget-ms 0.734] [--threads 1] \
        [--round-to none,8,16 --round-to none,8,16,64]

Each ``--round-to`` set is one search (the recipe's own x86-cpu rounding, 16, is added by the search as it
always is). Writes benchmarks/results/budget_search.{json,md}: per search its seconds, timed and untimed
levels, the choice, and the trace (every timed candidate's MMACs and p50 per runtime and precision).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _teacher import teacher_checkpoint  # noqa: E402

from edgekit.data.sources import load_data_for  # noqa: E402
from edgekit.models import load_model  # noqa: E402
from edgekit.pipeline import run_search  # noqa: E402
from edgekit.profiling.latency import host_identity  # noqa: E402
from edgekit.recipe import BudgetSettings, load_recipe  # noqa: E402
from edgekit.runtime.identity import describe_host  # noqa: E402
from edgekit.target import load_target  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def roundings(text: str) -> list[int | None]:
    return [None if r == "none" else int(r) for r in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, help="edgekit checkpoint [default: vs_peers' resnet-large teacher]")
    parser.add_argument("--budget-ms", type=float, default=0.734,
                        help="the budget [default: ½ of the teacher's OpenVINO INT8 p50 in vs_peers, Xeon 2026-12-05]")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--round-to", action="append", type=roundings,
                        help="a rounding set, e.g. none,8,64 (repeatable) [default: none,8 and none,8,64]")
    args = parser.parse_args()
    teacher = args.teacher or teacher_checkpoint("builtin:resnet18_32", epochs=3, steps=100, fast=True)
    model = load_model(str(teacher))
    data = load_data_for("fashion-mnist", model.spec)
    recipe, target = load_recipe("x86-cpu"), load_target("x86-cpu")
    runs = []
    for rounding in args.round_to or [[None, 8], [None, 8, 64]]:
        budget = BudgetSettings(latency_ms=args.budget_ms, round_to=rounding)
        start = time.perf_counter()
        _, section = run_search(model, data, recipe, target, budget, args.threads, None)
        seconds = time.perf_counter() - start
        chosen = section.chosen
        combos = len({(c.backend, c.precision) for c in section.trace})
        runs.append({"round_to": rounding, "seconds": round(seconds, 1), "timed_levels": len(section.trace) // combos,
                     "untimed_levels": section.untimed,
                     "chosen": {"level": chosen.level, "round_to": chosen.round_to, "mmacs": round(chosen.macs / 1e6, 1),
                                "backend": chosen.backend, "precision": chosen.precision,
                                "p50_ms": round(chosen.p50_ms, 4), "retimed_ms": [round(t, 4) for t in chosen.retimed_ms]},
                     "trace": [{"level": c.level, "round_to": c.round_to, "mmacs": round(c.macs / 1e6, 1),
                                "backend": c.backend, "precision": c.precision,
                                "p50_ms": None if c.p50_ms is None else round(c.p50_ms, 4)} for c in section.trace]})
        print(f"round_to {rounding}: {seconds:.0f} s, chose {chosen.label()} {chosen.p50_ms:.3f} ms", flush=True)
    results = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": host_identity(),
               "teacher": teacher.name, "budget_ms": args.budget_ms, "threads": args.threads, "runs": runs,
               "command": "PYTHONPATH=. python benchmarks/budget_search.py " + " ".join(sys.argv[1:])}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "budget_search.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "budget_search.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict) -> str:
    lines = [f"# The latency-budget search alone ({r['date']})", "",
             f"Host: {describe_host(r['host'])}; x86-cpu target measured here at {r['threads']} thread(s); teacher "
             f"`{r['teacher']}`; budget {r['budget_ms']} ms (aim: budget × 0.9). Reproduce: `{r['command']}`.", "",
             "| roundings (+ the recipe's ×16) | seconds | levels timed | levels bounded away | chosen | p50 ms (slowest re-timing) |",
             "|---|---|---|---|---|---|"]
    for run in r["runs"]:
        c = run["chosen"]
        rounding = ", ".join("none" if x is None else f"×{x}" for x in run["round_to"])
        lines.append(f"| {rounding} | {run['seconds']:.0f} | {run['timed_levels']} | {run['untimed_levels']} | "
                     f"{c['level']:.0%} of the MACs" + (f", ×{c['round_to']}" if c["round_to"] else "")
                     + f", {c['mmacs']} MMACs, {c['backend']} "
                     f"{c['precision']} | {c['p50_ms']:.3f} |")
    for run in r["runs"]:
        lines += ["", f"Trace, roundings {run['round_to']} (INT8 rows):", "", "| level | round to | MMACs | backend | p50 ms |",
                  "|---|---|---|---|---|"]
        lines += [f"| {c['level']:.0%} | {c['round_to'] or '—'} | {c['mmacs']} | {c['backend']} | {c['p50_ms']} |"
                  for c in run["trace"] if c["precision"] == "int8"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
