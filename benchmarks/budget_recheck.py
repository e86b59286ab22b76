"""Is a budget bundle's trained file slower than the untrained candidate the search timed, or was it timed
differently? For a bundle of ``edgekit compress --latency-budget-ms`` on a local target: the search's chosen
candidate rebuilt (the input model pruned as the search pruned it, untrained), the trained model of the bundle
and the input model, each compiled as the search compiles (32 calibration images) and timed by the search's
runner (``RunnerTimer``: a fresh process, random inputs) in three alternated rounds; then the bundle's own files
timed in this process in alternation, as ``edgekit compress`` times them.

    PYTHONPATH=. python benchmarks/budget_recheck.py BUNDLE

Writes benchmarks/results/budget_recheck.{json,md}.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

from edgekit.backends import BACKENDS
from edgekit.backends.base import Artifact
from edgekit.calibration import draw_calibration
from edgekit.data import load_data_for
from edgekit.models import load_checkpoint, load_model
from edgekit.profiling.latency import host_identity
from edgekit.recipe import Recipe
from edgekit.runtime import alternating_latency
from edgekit.runtime.identity import describe_host
from edgekit.search.budget import Search
from edgekit.search.timing import make_timer
from edgekit.target import load_target

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    bundle = Path(sys.argv[1])
    m = json.loads((bundle / "manifest.json").read_text())
    teacher = load_model(m["model"]["source"])
    data = load_data_for(m["data"]["source"], teacher.spec)
    recipe, target = Recipe(**m["recipe"]), load_target(m["target"]["name"])
    chosen = m["search"]["chosen"]
    calibration = draw_calibration(data.train, teacher.spec, 32, 0).inputs
    threads = m["artifacts"][0]["metrics"].get("latency", {}).get("threads", 1)
    timer, _ = make_timer(target, recipe, calibration, 60, 3.0, threads)
    search = Search(teacher, data, recipe, target, recipe.budget, timer, [], True)
    models = {"untrained candidate": search.prune(chosen["level"], chosen["round_to"]),
              "trained model": load_checkpoint(bundle / "artifacts" / "model.pt"), "input model": teacher}
    combos = [(a["backend"], a["precision"]) for a in m["artifacts"] if a["meta"].get("split_part") != "input"]
    runner: dict[str, list[list[float]]] = {name: [] for name in models}
    with timer.session():
        for r in range(3):
            for name, model in models.items():
                pairs = combos if name != "input model" else [("openvino", "fp32")]
                runner[name].append([t.p50_ms for t in timer.time(model, pairs)])
                print(f"runner round {r + 1}: {name}: {runner[name][-1]}", flush=True)
    artifacts = [Artifact(**a) for a in m["artifacts"]]
    sessions = {a.name: BACKENDS.get(a.backend)().load(a, bundle, threads) for a in artifacts}
    sample = calibration[:1].astype(np.float32)
    in_process = []
    for r in range(2):
        stats = alternating_latency({n: s.run for n, s in sessions.items()}, sample, 10, 300, 5.0)
        in_process.append({n: round(v["p50_ms"], 4) for n, v in stats.items()})
        print(f"in-process round {r + 1}: {in_process[-1]}", flush=True)
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": host_identity(),
              "bundle": str(bundle), "threads": threads, "combos": combos, "runner_p50_ms": runner,
              "in_process_p50_ms": in_process,
              "bundle_recorded_p50_ms": {a["name"]: a["metrics"].get("latency", {}).get("p50_ms") for a in m["artifacts"]},
              "search_chosen": {k: chosen[k] for k in ("level", "round_to", "backend", "precision", "p50_ms", "retimed_ms")},
              "command": f"PYTHONPATH=. python benchmarks/budget_recheck.py {bundle}"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "budget_recheck.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Budget bundle re-check ({result['date']})", "", f"Host: {describe_host(result['host'])}, "
             f"{threads} threads. Bundle `{bundle}`. Reproduce: `{result['command']}`.", "",
             f"Search chose {chosen['level']:.0%} of the MACs, round_to {chosen['round_to']}, {chosen['backend']} "
             f"{chosen['precision']}: {chosen['p50_ms']:.3f} ms (re-timed {chosen['retimed_ms']}). The bundle recorded "
             + ", ".join(f"{k} {v:.3f} ms" for k, v in result["bundle_recorded_p50_ms"].items() if v) + ".", "",
             "| timed by | model | p50 ms per round (" + ", ".join(f"{b} {p}" for b, p in combos) + ") |", "|---|---|---|"]
    lines += [f"| search's runner | {name} | {rounds} |" for name, rounds in runner.items()]
    lines += [f"| this process, in alternation (bundle files) | round {i + 1} | {r} |" for i, r in enumerate(in_process)]
    (RESULTS / "budget_recheck.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
