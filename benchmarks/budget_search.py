"""The latency-budget search alone (no training): how long it takes, how many levels it times and bounds away,
and what it chooses, for a list of channel-rounding sets. It is what ``edgekit compress --latency-budget-ms``
runs before training (``pipeline.run_search``), on the vs_peers ResNet-18 teacher (557 MMACs at 32 px) by
default, for the x86-cpu target measured on this host.

    python -m benchmarks run budget-search [--set budget_ms=0.734] [--set "round_to=[[null, 8, 64]]"]

Each ``round_to`` set is one search (the recipe's own x86-cpu rounding, 16, is added by the search as it
always is). The result: per search its seconds, timed and untimed levels, the choice, and the trace (every
timed candidate's MMACs and p50 per runtime and precision).
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks._teacher import teacher_checkpoint
from benchmarks.schema import Measured
from edgekit.data.sources import load_data_for
from edgekit.models import load_model
from edgekit.pipeline import run_search
from edgekit.recipe import BudgetSettings, load_recipe
from edgekit.target import load_target


def run(work: Path, budget_ms: float = 0.734, threads: int = 1,
        round_to: list[list[int | None]] | None = None, teacher: str | None = None) -> Measured:
    """The kind ``budget_search``: one search per rounding set in ``round_to`` (default: none,8 and none,8,64).
    ``teacher``: an edgekit checkpoint [default: vs_peers' resnet-large teacher, trained and cached once];
    ``budget_ms``: half of that teacher's OpenVINO INT8 p50 in a vs_peers run."""
    teacher_path = Path(teacher) if teacher else teacher_checkpoint("builtin:resnet18_32", epochs=3, steps=100, fast=True)
    model = load_model(str(teacher_path))
    data = load_data_for("fashion-mnist", model.spec)
    recipe, target = load_recipe("x86-cpu"), load_target("x86-cpu")
    runs = []
    for rounding in round_to or [[None, 8], [None, 8, 64]]:
        budget = BudgetSettings(latency_ms=budget_ms, round_to=rounding)
        start = time.perf_counter()
        _, section = run_search(model, data, recipe, target, budget, threads, None)
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
    return summarize({"teacher": teacher_path.name, "budget_ms": budget_ms, "threads": threads, "runs": runs})


def summarize(raw: dict) -> Measured:
    """One row per search (its roundings, plus the recipe's x16 the search always adds); traces in details."""
    rows = []
    for run_ in raw["runs"]:
        c = run_["chosen"]
        rows.append({"roundings": ", ".join("none" if x is None else f"x{x}" for x in run_["round_to"]),
                     "seconds": run_["seconds"], "levels_timed": run_["timed_levels"],
                     "levels_bounded_away": run_["untimed_levels"], "chosen_macs_level": c["level"],
                     "chosen_round_to": c["round_to"], "chosen_mmacs": c["mmacs"], "backend": c["backend"],
                     "precision": c["precision"], "p50_ms": c["p50_ms"], "retimed_ms": c["retimed_ms"]})
    return Measured(rows=rows, details={"teacher": raw["teacher"], "traces": [r["trace"] for r in raw["runs"]]},
                    notes=[f"x86-cpu target measured here at {raw['threads']} thread(s); teacher `{raw['teacher']}`; "
                           f"budget {raw['budget_ms']} ms (the search aims at budget x 0.9)"])
