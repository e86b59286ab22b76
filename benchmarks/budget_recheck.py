"""Is a budget bundle's trained file slower than the untrained candidate the search timed, or was it timed
differently? For a bundle of ``edgekit compress --latency-budget-ms`` on a local target: the search's chosen
candidate rebuilt (the input model pruned as the search pruned it, untrained), the trained model of the bundle
and the input model, each compiled as the search compiles (32 calibration images) and timed by the search's
runner (``RunnerTimer``: a fresh process, random inputs) in three alternated rounds; then the bundle's own files
timed in this process in alternation, as ``edgekit compress`` times them.

    python -m benchmarks run budget-recheck --set bundle=BUNDLE
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.schema import Measured
from edgekit.backends import BACKENDS
from edgekit.backends.base import Artifact
from edgekit.calibration import draw_calibration
from edgekit.data import load_data_for
from edgekit.errors import EdgekitError
from edgekit.models import load_checkpoint, load_model
from edgekit.recipe import Recipe
from edgekit.runtime import alternating_latency
from edgekit.search.budget import Search
from edgekit.search.timing import make_timer
from edgekit.target import load_target


def run(work: Path, bundle: str | None = None) -> Measured:
    """The kind ``budget_recheck``: ``bundle`` is a bundle of ``edgekit compress --latency-budget-ms`` on a local
    target (``--set bundle=PATH``)."""
    if not bundle:
        raise EdgekitError("budget-recheck needs a bundle", "python -m benchmarks run budget-recheck --set bundle=PATH")
    bundle_dir = Path(bundle)
    if not (bundle_dir / "manifest.json").is_file():
        raise EdgekitError(f"{bundle_dir} is not a bundle (no manifest.json)", "give a folder edgekit compress wrote")
    m = json.loads((bundle_dir / "manifest.json").read_text())
    if not m.get("search"):
        raise EdgekitError(f"{bundle_dir} was not made under a latency budget", "give a --latency-budget-ms bundle")
    teacher = load_model(m["model"]["source"])
    data = load_data_for(m["data"]["source"], teacher.spec)
    recipe, target = Recipe(**m["recipe"]), load_target(m["target"]["name"])
    chosen = m["search"]["chosen"]
    calibration = draw_calibration(data.train, teacher.spec, 32, 0).inputs
    threads = m["artifacts"][0]["metrics"].get("latency", {}).get("threads", 1)
    timer, _ = make_timer(target, recipe, calibration, 60, 3.0, threads)
    search = Search(teacher, data, recipe, target, recipe.budget, timer, [], True)
    models = {"untrained candidate": search.prune(chosen["level"], chosen["round_to"]),
              "trained model": load_checkpoint(bundle_dir / "artifacts" / "model.pt"), "input model": teacher}
    combos = [(a["backend"], a["precision"]) for a in m["artifacts"] if a["meta"].get("split_part") != "input"]
    runner: dict[str, list[list[float]]] = {name: [] for name in models}
    with timer.session():
        for r in range(3):
            for name, model in models.items():
                pairs = combos if name != "input model" else [("openvino", "fp32")]
                runner[name].append([t.p50_ms for t in timer.time(model, pairs)])
                print(f"runner round {r + 1}: {name}: {runner[name][-1]}", flush=True)
    artifacts = [Artifact(**a) for a in m["artifacts"]]
    sessions = {a.name: BACKENDS.get(a.backend)().load(a, bundle_dir, threads) for a in artifacts}
    sample = calibration[:1].astype(np.float32)
    in_process = []
    for r in range(2):
        stats = alternating_latency({n: s.run for n, s in sessions.items()}, sample, 10, 300, 5.0)
        in_process.append({n: round(v["p50_ms"], 4) for n, v in stats.items()})
        print(f"in-process round {r + 1}: {in_process[-1]}", flush=True)
    return summarize({"bundle": str(bundle_dir), "threads": threads, "combos": combos, "runner_p50_ms": runner,
                      "in_process_p50_ms": in_process,
                      "bundle_recorded_p50_ms": {a["name"]: a["metrics"].get("latency", {}).get("p50_ms")
                                                 for a in m["artifacts"]},
                      "search_chosen": {k: chosen[k] for k in ("level", "round_to", "backend", "precision", "p50_ms",
                                                               "retimed_ms")}})


def summarize(raw: dict) -> Measured:
    """One row per timing round: who timed, which model, the p50 of each (backend, precision)."""
    combos = [f"{b} {p}" for b, p in raw["combos"]]
    rows = [{"timed_by": "search's runner", "model": name, "round": i + 1,
             **dict(zip(combos if name != "input model" else ["openvino fp32"], p50s))}
            for name, rounds in raw["runner_p50_ms"].items() for i, p50s in enumerate(rounds)]
    rows += [{"timed_by": "this process, in alternation (bundle files)", "round": i + 1, **r}
             for i, r in enumerate(raw["in_process_p50_ms"])]
    c = raw["search_chosen"]
    return Measured(rows=rows, details={k: raw[k] for k in ("bundle", "bundle_recorded_p50_ms", "search_chosen")},
                    notes=[f"bundle `{raw['bundle']}`, {raw['threads']} thread(s); the search chose {c['level']:.0%} of "
                           f"the MACs, round_to {c['round_to']}, {c['backend']} {c['precision']}: {c['p50_ms']:.3f} ms "
                           f"(re-timed {c['retimed_ms']})"])
