"""``compress``: the phases in order, the manifest built from their records, the bundle written atomically."""

from __future__ import annotations

import copy
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgekit import ui
from edgekit._version import __version__
from edgekit.bundle import atomic_bundle, reserved_out_dir, write_json
from edgekit.compilation import build_units
from edgekit.errors import EdgekitError
from edgekit.manifest import Manifest, write_manifest
from edgekit.models import save_checkpoint
from edgekit.pipeline.clock import PhaseClock
from edgekit.pipeline.options import CompressOptions, budget_gates, effective_budget
from edgekit.pipeline.phases import (Compiled, Inputs, Reference, compile_and_profile, load_inputs, measure_final,
                                     measure_input, run_search, run_stages)
from edgekit.pipeline.retime import bench_for_budget, retime_for_budget
from edgekit.profiling.latency import host_identity
from edgekit.quant_debug.bundle import debug_over_bound
from edgekit.pruning.layers import widest_layer
from edgekit.gates import Gates
from edgekit.recipe import BudgetSettings, Recipe, largest_batch, load_recipe
from edgekit.reports.render import write_reports
from edgekit.target import Target, load_target
from edgekit.training import distributed
from edgekit.training.device import resolve_device, using_device
from edgekit.verdicts import decide

# Libraries whose versions the manifest records (what built and measured the files).
RECORDED_LIBRARIES = ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "nncf", "torch-pruning", "numpy")


def compress(opts: CompressOptions) -> Manifest | None:
    """Run every phase and write the bundle; returns its manifest (None on a torchrun rank other than 0,
    which only trains)."""
    target = load_target(opts.target)
    recipe = opts.recipe if isinstance(opts.recipe, Recipe) else load_recipe(opts.recipe or target.recipe)
    if opts.overrides:
        recipe = recipe.model_copy(update={"compile": recipe.compile.model_copy(update=opts.overrides)})
    server_target = load_target(opts.server_target)
    budget = effective_budget(recipe, opts.latency_budget_ms, opts.budget_students)
    gates = budget_gates(opts.gates, budget)
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    out = Path(opts.out) if opts.out is not None else (
        Path("edgekit-runs") / f"{recipe.name}-{target.name}-{dt.datetime.now():%Y%m%d-%H%M%S}")
    with reserved_out_dir(out, opts.force):  # checked and locked before any training, released however it ends
        return _run(opts, out, target, recipe, server_target, budget, gates)


def _run(opts: CompressOptions, out: Path, target: Target, recipe: Recipe, server_target: Target,
         budget: BudgetSettings | None, gates: Gates) -> Manifest | None:
    device = resolve_device(opts.device)  # --device cuda without CUDA fails here, before any work
    distributed.init_if_launched(device)  # under torchrun: training stages run data-parallel
    # Profiling here runs on this host, so its thread count is the host's, not the device's.
    threads = opts.threads or recipe.profile.threads or os.cpu_count() or 1

    started = time.perf_counter()
    clock = PhaseClock()
    with clock("load"):
        inputs = load_inputs(opts, largest_batch(recipe), device)
    model, data = inputs.model, inputs.data
    recipe, rounding = recipe.for_target(target, widest_layer(model.module))
    if rounding:
        ui.info(rounding)
    input_model = copy.deepcopy(model)   # stages mutate the model; the input reference artifact and robustness need it
    with using_device(device), clock("input_reference"):
        input_ref = measure_input(model, data)
    search_section = None
    if budget is not None:
        if distributed.world_size() > 1:
            raise EdgekitError("--latency-budget-ms cannot run under torchrun (every rank would time candidates)",
                               "run the search once without torchrun, then train its recipe (manifest "
                               "search.plan) with torchrun")
        with clock("search"):
            recipe, search_section = run_search(input_model, data, recipe, target, budget, threads, opts.remote)
    with using_device(device), clock("stages"):
        final, stage_records, _ = run_stages(model, data, recipe, target, use_cache=opts.use_cache,
                                             resume=opts.resume)
    if not distributed.is_main():
        return None  # rank 0 compiles and writes the bundle
    if final.notes.get("head"):
        ui.warn(f"{final.notes['head']} — the recipe has no training stage, so accuracy will be near chance")
    with using_device(device), clock("final_reference"):
        final_ref = measure_final(final, data)

    units, skipped = build_units(final, data, recipe, target, server_target, input_model, input_ref.logits)
    with atomic_bundle(out, opts.force) as tmp:
        checkpoint_sha = save_checkpoint(final, tmp / "artifacts" / "model.pt") if final.arch else None
        compiled = compile_and_profile(units, skipped, final, input_model, data, recipe, server_target,
                                       stage_records, tmp, threads, final_ref, clock)
        manifest = build_manifest(opts, out, recipe, target, inputs, input_ref, final_ref, final, checkpoint_sha,
                                  stage_records, compiled, search_section, clock, time.perf_counter() - started)
        decide(manifest, gates)   # drops, precision selection, gates, deploy (edgekit.verdicts)
        debug_over_bound(manifest, tmp, threads)   # INT8 artifacts over their bound: per-layer SQNR, report section
        write_manifest(tmp, manifest)
        write_reports(tmp, manifest)
        write_json(tmp / "logs" / "stages.json", {"stages": stage_records})
    if opts.remote is not None:   # measure the bundle on the device too; decisions then use its numbers
        from edgekit.profiling.bench import BenchSettings

        ui.info(f"[bold]bench[/bold] the bundle on {opts.remote.describe()}")
        manifest = bench_for_budget(out, BenchSettings(), remote=opts.remote)
    elif budget is not None and target.reach == "local":
        manifest = retime_for_budget(out, recipe, threads)
    manifest.bundle = str(out)
    return manifest


def build_manifest(opts: CompressOptions, out: Path, recipe, target, inputs: Inputs, input_ref: Reference,
                   final_ref: Reference, final, checkpoint_sha: str | None, stage_records: list[dict],
                   compiled: Compiled, search_section, clock: PhaseClock, seconds: float) -> Manifest:
    """The manifest from the phases' records (decisions are added by ``verdicts.decide``)."""
    return Manifest(
        edgekit_version=__version__,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        run_name=out.name,
        command=opts.command if opts.command is not None else list(sys.argv),
        host=host_identity(),
        versions=library_versions(),
        recipe=recipe,
        target=target,
        model=inputs.source,
        data=inputs.data.summary(),
        stages=stage_records,
        references={"input": input_ref.record, "final": final_ref.record},
        final_model={"path": "artifacts/model.pt" if checkpoint_sha else None, "sha256": checkpoint_sha,
                     "spec": final.spec},
        artifacts=[a.model_dump() for a in compiled.artifacts],
        skipped=compiled.skipped,
        **compiled.sections,   # calibration set, precision: auto decisions
        split=compiled.split,
        robustness=compiled.robustness,
        search=search_section,
        seconds=round(seconds, 1),
        phases=clock.seconds,
    )


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for package in RECORDED_LIBRARIES:
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return versions
