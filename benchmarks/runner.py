"""Runs a scenario: looks up the runner function of its kind, calls it with the scenario's parameters, judges
the bars on what it measured and stores the result (one file per scenario and host) and the index.

A kind's function takes ``work`` (a scratch folder kept under benchmarks/cache/ so that reruns reuse trained
models) and the scenario's parameters as keyword arguments, and returns a ``Measured``. It writes nothing under
benchmarks/results/: storing and rendering happen here, once for every kind."""

from __future__ import annotations

import importlib
import inspect
import subprocess
from pathlib import Path
from typing import Any, Callable

from benchmarks.schema import (HERE, RESULTS, Host, Measured, Result, Scenario, combine_runs, judge, load_scenarios,
                               now, save_result, stored_results)
from edgekit.errors import EdgekitError

CACHE = HERE / "cache"

# kind -> "module:function". Imported only when a scenario of that kind runs or is checked, so that listing the
# scenarios does not import torch.
KINDS = {
    "compress": "benchmarks.compress:run",
    "vs_peers": "benchmarks.vs_peers:run",
    "zoo": "benchmarks.zoo_suite:run",
    "zoo_sample": "benchmarks.zoo_sample:run",
    "estimator": "benchmarks.estimator_accuracy:run",
    "target_calibration": "benchmarks.calibrate_targets:run",
    "train_throughput": "benchmarks.train_throughput:run",
    "kd_teacher": "benchmarks.kd_teacher:run",
    "budget_search": "benchmarks.budget_search:run",
    "budget_recheck": "benchmarks.budget_recheck:run",
    "remote_vs_local": "benchmarks.remote_vs_local:run",
    "quant": "benchmarks.quant_bench:run",
    "quant_openvino_sizes": "benchmarks.quant_bench:openvino_sizes",
    "prune_distill": "benchmarks.prune_distill_fmnist:run",
    "split": "benchmarks.split_fashion_mnist:run",
    "split_profile": "benchmarks.split_fashion_mnist:profile",
    "seed_methods": "benchmarks.seed_methods:run",
    "real_lite0": "benchmarks.real_lite0:run",
}


def runner_of(kind: str) -> Callable[..., Measured]:
    if kind not in KINDS:
        raise EdgekitError(f"unknown benchmark kind {kind!r}", f"one of: {', '.join(sorted(KINDS))}")
    module, _, function = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), function)


def check_params(scenario: Scenario, quick: bool = False, overrides: dict[str, Any] | None = None,
                 seeds: list[int] | None = None) -> dict[str, Any]:
    """The parameters the runner will get, checked against its signature before anything is measured (a typo
    in scenarios.yaml or in --set fails here, not an hour into a run). A scenario that repeats over seeds needs
    a runner that takes ``seed``."""
    params = {**scenario.params_for(quick), **(overrides or {})}
    signature = inspect.signature(runner_of(scenario.kind))
    try:
        signature.bind(work=CACHE, **params, **({"seed": 0} if seeds else {}))
    except TypeError as err:
        raise EdgekitError(f"scenario {scenario.name}: {err}",
                           f"the parameters of kind {scenario.kind} are: "
                           + ", ".join(p for p in signature.parameters if p != "work")) from None
    return params


def git_commit() -> str | None:
    """HEAD of this checkout, marked ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def measure(scenario: Scenario, work: Path, params: dict[str, Any], seeds: list[int] | None) -> Measured:
    """One run of the scenario's runner, or one per seed combined (``combine_runs``: mean, min-max, worst)."""
    run = runner_of(scenario.kind)
    if not seeds:
        return run(work=work, **params)
    runs = []
    for seed in seeds:
        print(f"== {scenario.name}: seed {seed} ({len(runs) + 1} of {len(seeds)})", flush=True)
        runs.append((seed, run(work=work, **params, seed=seed)))
    return combine_runs(runs)


def run_scenario(name: str, quick: bool = False, overrides: dict[str, Any] | None = None,
                 results: Path = RESULTS, command: str = "", seeds: list[int] | None = None) -> Path:
    """Measures scenario ``name`` and stores its result and the index; returns the result's path. ``seeds``
    overrides the scenario's own (``--seeds 0,1,2``)."""
    table = load_scenarios()
    scenario = table.get(name)
    seeds = seeds if seeds is not None else scenario.seeds_for(quick)
    params = check_params(scenario, quick, overrides, seeds)
    work = CACHE / (scenario.name + ("-quick" if quick else ""))
    work.mkdir(parents=True, exist_ok=True)
    measured = measure(scenario, work, params, seeds)
    if quick and scenario.seeds and len(scenario.seeds) > 1:
        measured.notes.insert(0, f"quick: seed {measured.seeds[0]} only (the full run repeats over seeds "
                                 f"{', '.join(map(str, scenario.seeds))})")
    result = Result(scenario=scenario.name, description=scenario.description, kind=scenario.kind, quick=quick,
                    host=Host.here(), date=now(), commit=git_commit(),
                    command=command or f"python -m benchmarks run {name}" + (" --quick" if quick else ""),
                    params=params, rows=measured.rows, metrics=measured.metrics,
                    bars=judge(scenario.bars, measured.metrics, measured.spread), seeds=measured.seeds,
                    notes=measured.notes, details=measured.details, spread=measured.spread,
                    per_seed=measured.per_seed)
    path = save_result(result, results)
    write_index(results)
    return path


def write_index(results: Path = RESULTS) -> Path:
    """Rewrites ``results``/README.md from the stored results."""
    from benchmarks.render import render_index

    path = results / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_index(stored_results(results), load_scenarios(), results))
    return path
