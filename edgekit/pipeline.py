"""``compress``: model source -> stages -> compile per target backend -> profile -> bundle.

This is the library entry point the CLI wraps; it is also what the tests and benchmarks call.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgekit import __version__, ui
from edgekit.bundle import atomic_bundle, check_out_dir, write_json
from edgekit.compilation import artifact_part, build_units, compile_all, failed_builds, serving_tail
from edgekit.data import DataSplits, load_data_for
from edgekit.errors import EdgekitError
from edgekit.models import LoadedModel, load_checkpoint, load_model, save_checkpoint
from edgekit.models.checkpoint import file_sha256
from edgekit.models.loaded import state_hash
from edgekit.training.default_teacher import DEFAULT_DATA, default_teacher_path
from edgekit.models.sources import replace_classifier
from edgekit.models.complexity import count_macs, count_params
from edgekit.pruning.layers import widest_layer
from edgekit.profiling.latency import host_identity
from edgekit.recipe import BudgetSettings, Recipe, load_recipe
from edgekit.gates import Gates
from edgekit.verdicts import decide
from edgekit.manifest import Manifest, write_manifest
from edgekit.reports.render import write_reports
from edgekit.resources import cache_dir
from edgekit.profiling.robustness import robustness_section
from edgekit.split.deploy import split_section as split_section_of
from edgekit.stages import STAGES, StageContext
from edgekit.targets import Target, load_target
from edgekit.training import distributed
from edgekit.training.device import current_device, resolve_device, using_device
from edgekit.training.evaluate import module_logits, accuracy_counts

if TYPE_CHECKING:
    from edgekit.profiling.bench import BenchSettings


@dataclass
class CompressOptions:
    model: str | None = None
    data: str | None = None
    recipe: str | None = None      # None: the target's own recipe (targets/*.yaml `recipe:`)
    target: str = "x86-cpu"
    out: Path | None = None
    force: bool = False
    arch: str | None = None
    input_size: tuple[int, int] | None = None
    trust_pickle: bool = False
    use_cache: bool = True
    resume: bool = True            # continue an interrupted training stage from its last epoch checkpoint
    threads: int | None = None
    overrides: dict = field(default_factory=dict)   # recipe compile overrides (library callers; the CLI's gates never set them)
    server_target: str = "x86-cpu"                  # where the tail of a split model runs
    gates: Gates = field(default_factory=Gates)      # CI gates (edgekit/gates.py); results go in the manifest
    device: str = "auto"                             # auto | cpu | cuda | cuda:N: training and evaluation
    skip_broken_images: bool = False                 # leave unreadable files out (listed in the manifest)
    latency_budget_ms: float | None = None           # the goal (recipe ``budget:``, edgekit/search/); overrides its latency_ms
    budget_students: list[str] = field(default_factory=list)  # more budget.students (student architectures searched)
    remote: Any = None                               # an SshDevice: time search candidates there, bench the bundle there


def effective_budget(recipe: Recipe, latency_budget_ms: float | None,
                     students: list[str] | None = None) -> BudgetSettings | None:
    """The recipe's ``budget:`` with ``--latency-budget-ms`` over its latency (or alone, with defaults), and
    ``--budget-student`` sources added to its students."""
    if latency_budget_ms is None:
        if recipe.budget is not None and recipe.budget.latency_ms is None:
            raise EdgekitError(f"recipe {recipe.name} has a budget: section without latency_ms",
                               "set budget.latency_ms or pass --latency-budget-ms")
        if students and recipe.budget is None:
            raise EdgekitError("--budget-student needs a latency budget to search under",
                               "add --latency-budget-ms B (or a budget: section to the recipe)")
        budget = recipe.budget
    elif latency_budget_ms <= 0:
        raise EdgekitError(f"--latency-budget-ms {latency_budget_ms:g} is not positive", "give the budget in ms, e.g. 5")
    else:
        base = recipe.budget or BudgetSettings(latency_ms=latency_budget_ms)
        budget = base.model_copy(update={"latency_ms": latency_budget_ms})
    if budget is not None and students:
        budget = budget.model_copy(update={"students": list(dict.fromkeys([*budget.students, *students]))})
    return budget


def budget_gates(gates: Gates, budget: BudgetSettings | None) -> Gates:
    """A budget is also a latency gate on the deployed artifact: the bundle is judged on it (exit 3 when missed)."""
    if budget is None:
        return gates
    limit = budget.latency_ms if gates.max_latency_ms is None else min(gates.max_latency_ms, budget.latency_ms)
    return Gates(gates.max_accuracy_drop, limit)


def resolve_inputs(opts: CompressOptions) -> tuple[LoadedModel, DataSplits]:
    """Model and data, with the embedded default (digits teacher) when neither is given."""
    if opts.model is None and opts.data is None:
        model_source, data_source = str(default_teacher_path()), DEFAULT_DATA
    elif opts.model is None or opts.data is None:
        missing = "--data" if opts.data is None else "--model"
        raise EdgekitError(f"{missing} is missing", "give both --model and --data, or neither for the built-in demo")
    else:
        model_source, data_source = opts.model, opts.data
    model = load_model(model_source, arch=opts.arch, input_size=opts.input_size, trust_pickle=opts.trust_pickle)
    data = load_data_for(data_source, model.spec, skip_broken=opts.skip_broken_images)
    if data.num_classes != model.spec.num_classes:
        replace_classifier(model, data.num_classes)
        ui.warn(model.notes["head"])
    if model.spec.class_names is None:
        model.spec = model.spec.model_copy(update={"class_names": data.class_names})
    return model, data


NEAR_CHANCE = 1.5   # x the chance level: below it the input model has learnt (almost) nothing


def measure_input(model: LoadedModel, data: DataSplits) -> tuple[dict, np.ndarray]:
    """The INPUT reference: the model the user gave, in PyTorch on the test split, before any stage
    (what gates and deploy measure the cost of compression against). Warns when it is near chance there:
    distilling from or pruning an untrained model gives meaningless numbers. (The warning decides nothing,
    so it reads the test accuracy computed here anyway; a separate val pass cost 13 s on a 557-MMAC model.)"""
    ui.info("[bold]input reference[/bold]: PyTorch accuracy of the input model on the test split")
    logits, labels = module_logits(model.module, model.spec, data.test)
    accuracy = accuracy_counts(logits, labels)
    chance = 100.0 / max(model.spec.num_classes, 1)
    if accuracy["top1"] < NEAR_CHANCE * chance:
        ui.warn(f"the input model is near chance on the test split (top-1 {accuracy['top1']:.2f}%, chance "
                f"{chance:.2f}%): is it trained for this data? Distillation from it is meaningless")
    return ({"accuracy": {**accuracy, "samples": int(len(labels))},
             "params": count_params(model.module), "macs": count_macs(model.module, model.spec)}, logits)


# Val images each stage's after-stage accuracy is read on. It is a progress figure for the stage table (how much
# pruning cost before the KD that follows it recovers): a full pass per stage cost 4 s of a 6-minute run on a
# 5000-image val split (vs_peers resnet-large, 2026-12-05) and minutes per stage on an ImageNet-sized one. The
# binomial standard error at 2000 images is at most 1.1 pt (0.8 pt at 86% top-1).
STAGE_CHECK_IMAGES = 2000


def run_stages(model: LoadedModel, data: DataSplits, recipe: Recipe, target: Target,
               use_cache: bool = True, resume: bool = True) -> tuple[LoadedModel, list[dict], list]:
    """Runs the recipe's stages in order; stage outputs are cached by ``stage_cache_key``."""
    teacher = copy.deepcopy(model)
    teacher.module.eval().requires_grad_(False)
    teacher_hash = state_hash(teacher.module)
    data_fingerprint = data.fingerprint
    records, results = [], []
    for index, entry in enumerate(recipe.stages):
        stage_cls = STAGES.get(entry.name)
        params = stage_cls.Params(**entry.params)
        key = stage_cache_key(model, teacher_hash, index, entry.name, params.model_dump(mode="json"),
                              data_fingerprint, recipe.seed)
        params_before, macs_before = count_params(model.module), count_macs(model.module, model.spec)
        cached_model, cached_metrics = _cache_get(key) if use_cache else (None, None)
        ui.info(f"[bold]stage {index + 1}/{len(recipe.stages)}: {entry.name}[/bold]"
                + (" (cached)" if cached_metrics is not None else ""))
        t0 = time.perf_counter()
        if cached_metrics is not None:
            if cached_model is not None:
                model = cached_model
            metrics, changed = cached_metrics, cached_model is not None
        else:
            torch.manual_seed(recipe.seed + index)
            ctx = StageContext(model=model, teacher=teacher, data=data, target=target,
                               work_dir=cache_dir("work", key), seed=recipe.seed, resume=use_cache and resume,
                               device=current_device())
            result = stage_cls(params).run(ctx)
            results.append(result)
            model, metrics, changed = result.model, result.metrics, result.changed_model
            if use_cache and distributed.is_main():
                _cache_put(key, model if changed else None, metrics)
            distributed.barrier()  # under torchrun: every rank leaves the stage together
        # The accuracy after the stage: an evaluate stage's own number on its split, else on the first
        # STAGE_CHECK_IMAGES of val (a progress figure; the final model's is the full test split's reference).
        if entry.name == "evaluate":
            top1, split, samples = metrics["top1"], metrics["split"], metrics.get("samples")
        else:
            logits, labels = module_logits(model.module, model.spec, data.val, limit=STAGE_CHECK_IMAGES)
            top1, split, samples = accuracy_counts(logits, labels)["top1"], "val", int(len(labels))
        records.append({"name": entry.name, "params": params.model_dump(mode="json"), "metrics": metrics,
                        "params_before": params_before, "params_after": count_params(model.module),
                        "macs_before": macs_before, "macs_after": count_macs(model.module, model.spec),
                        "top1": top1, "split": split, "samples": samples,
                        "seconds": round(time.perf_counter() - t0, 2),
                        "cached": cached_metrics is not None, "cache_key": key})
    return model, records, results


# Libraries whose version can change what a stage produces (weights, pruning choices, data decoding).
_STAGE_LIBRARIES = ("torch", "torchvision", "numpy", "torch-pruning", "timm", "pillow")
_PACKAGE_ROOT = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def code_fingerprint(root: Path | None = None) -> str:
    """A hash of the edgekit source (every .py file under ``root``, by path and content): the code that computed
    a cached stage output. Why: ``__version__`` is not bumped on every change, so a key holding only it served
    stage outputs, and their metrics, that older code had computed, after an edit or an upgrade from git. About
    150 files: milliseconds, once per process."""
    root = root or _PACKAGE_ROOT
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stage_cache_key(model: LoadedModel, teacher_hash: str, index: int, stage: str, params: dict,
                    data_fingerprint: str, seed: int) -> str:
    """What a stage's output depends on: its input model (weights and arch) and the pipeline's input model
    (distillation's default teacher), its position (it is seeded with seed + index), its settings and the
    files they name (a teacher checkpoint replaced under the same path), the data's content, and the
    edgekit code and library versions that compute it."""
    import importlib.metadata as md

    versions = {"edgekit": __version__, "edgekit_code": code_fingerprint()}
    for package in _STAGE_LIBRARIES:
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    versions["torch"] = str(torch.__version__)  # the running torch (a source build has no metadata)
    named_files = {value: file_sha256(Path(value)) for value in _strings(params)
                   if len(value) < 4096 and Path(value).is_file()}
    blob = json.dumps({"model": state_hash(model.module), "arch": model.arch, "teacher": teacher_hash,
                       "index": index, "stage": stage, "params": params, "files": named_files,
                       "data": data_fingerprint, "seed": seed, "versions": versions},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _cache_get(key: str) -> tuple[LoadedModel | None, dict | None]:
    folder = cache_dir("stages")
    meta = folder / f"{key}.json"
    if not meta.exists():
        return None, None
    ckpt = folder / f"{key}.pt"
    metrics = json.loads(meta.read_text())
    return (load_checkpoint(ckpt) if ckpt.exists() else None), metrics


def _cache_put(key: str, model: LoadedModel | None, metrics: dict) -> None:
    folder = cache_dir("stages")
    if model is not None:
        if model.arch is None:
            return  # cannot be rebuilt (TorchScript/pickled module): no cache, the stage reruns
        save_checkpoint(model, folder / f"{key}.pt")
    (folder / f"{key}.json").write_text(json.dumps(metrics, default=str))


class PhaseClock:
    """Wall-clock seconds of each phase of a run (manifest ``phases``), so a user (and benchmarks/vs_peers.py)
    can see where a run's time went besides training: references, search, compiling and profiling."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 2)


def compress(opts: CompressOptions) -> Manifest | None:
    """Run everything and write the bundle; returns its manifest (None on a torchrun rank other than 0,
    which only trains)."""
    target = load_target(opts.target)
    recipe = load_recipe(opts.recipe or target.recipe)
    if opts.overrides:
        recipe = recipe.model_copy(update={"compile": recipe.compile.model_copy(update=opts.overrides)})
    server_target = load_target(opts.server_target)
    budget = effective_budget(recipe, opts.latency_budget_ms, opts.budget_students)
    gates = budget_gates(opts.gates, budget)
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    model_preview = opts.model or "default"
    run_name = f"{recipe.name}-{target.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out = opts.out or Path("edgekit-runs") / run_name
    check_out_dir(out, opts.force)  # fail before any training
    device = resolve_device(opts.device)  # --device cuda without CUDA fails here, before any work
    distributed.init_if_launched(device)  # under torchrun: training stages run data-parallel
    # Profiling here runs on this host, so its thread count is the host's, not the device's.
    threads = opts.threads or recipe.profile.threads or os.cpu_count() or 1

    started = time.perf_counter()
    phase = PhaseClock()
    with phase("load"):
        model, data = resolve_inputs(opts)
    source_info = {"source": opts.model or model.source, "sha256": model.sha256, "arch": model.arch,
                   "spec": model.spec.model_dump(mode="json"), "params": count_params(model.module),
                   "macs": count_macs(model.module, model.spec), "notes": dict(model.notes),
                   "requested": model_preview}
    recipe, rounding = recipe.for_target(target, widest_layer(model.module))
    if rounding:
        ui.info(rounding)
    input_model = copy.deepcopy(model)   # stages mutate the model; the input reference artifact and robustness need it
    with using_device(device), phase("input_reference"):
        input_reference, input_logits = measure_input(model, data)
    search_section = None
    if budget is not None:
        if distributed.world_size() > 1:
            raise EdgekitError("--latency-budget-ms cannot run under torchrun (every rank would time candidates)",
                               "run the search once without torchrun, then train its recipe (manifest "
                               "search.plan) with torchrun")
        with phase("search"):
            recipe, search_section = run_search(input_model, data, recipe, target, budget, threads, opts.remote)
    with using_device(device), phase("stages"):
        final, stage_records, _ = run_stages(model, data, recipe, target, use_cache=opts.use_cache,
                                             resume=opts.resume)
    if not distributed.is_main():
        return None  # rank 0 compiles and writes the bundle
    if final.notes.get("head"):
        ui.warn(f"{final.notes['head']} — the recipe has no training stage, so accuracy will be near chance")

    ui.info("[bold]reference[/bold]: PyTorch accuracy of the final model on the test split")
    with using_device(device), phase("final_reference"):
        ref_logits, ref_labels = module_logits(final.module, final.spec, data.test)
    reference = {"accuracy": {**accuracy_counts(ref_logits, ref_labels), "samples": int(len(ref_labels))},
                 "params": count_params(final.module), "macs": count_macs(final.module, final.spec)}

    units, skipped = build_units(final, data, recipe, target, server_target, input_model, input_logits)
    with atomic_bundle(out, opts.force) as tmp:
        checkpoint_sha = save_checkpoint(final, tmp / "artifacts" / "model.pt") if final.arch else None
        with phase("compile_profile"):
            artifacts, quant_sections = compile_all(units, data, recipe, tmp, threads, ref_logits,
                                                    reference["accuracy"]["top1"])
        split_section = None
        if any(u.part == "head" for u in units):  # bottleneck stage: head for the device, tail for the server
            by_part = {u.part: u.artifacts for u in units}
            stage = next((r["metrics"] for r in reversed(stage_records) if r["name"] == "bottleneck"), {})
            split_section = split_section_of(final, by_part["head"], by_part["tail"], serving_tail(by_part["tail"]),
                                             server_target.name, stage)
        # robustness (optional): input vs final model vs each artifact
        robustness = None
        if recipe.robustness:
            with phase("robustness"):
                robustness = robustness_section(input_model, final,
                                                [a for a in artifacts if artifact_part(a) != "input"],
                                                tmp, data.test, recipe.robustness, threads)
        manifest = Manifest(
            edgekit_version=__version__,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            run_name=out.name,
            command=sys.argv,
            host=host_identity(),
            versions=_versions(),
            recipe=recipe,
            target=target,
            model=source_info,
            data=data.summary(),
            stages=stage_records,
            references={"input": input_reference, "final": reference},
            final_model={"path": "artifacts/model.pt" if checkpoint_sha else None, "sha256": checkpoint_sha,
                         "spec": final.spec},
            artifacts=[a.model_dump() for a in artifacts],
            skipped=skipped + failed_builds(units),   # backends that dropped out, with their reason
            **quant_sections,   # calibration set, precision: auto decisions
            split=split_section,
            robustness=robustness,
            search=search_section,
            seconds=round(time.perf_counter() - started, 1),
            phases=phase.seconds,
        )
        decide(manifest, gates)   # drops, precision selection, gates, deploy (edgekit.verdicts)
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


# Takes of the bundle's timing the budget is judged on when the first one misses (odd: the verdict reads the median).
BUDGET_TAKES = 3


def retime_for_budget(out: Path, recipe: Recipe, threads: int) -> Manifest:
    """The bundle's files re-timed by the runner that timed the search's candidates (a fresh process, random
    inputs, latency only), merged as a local bench entry: the budget check, the gates and the deploy choice
    then read the clock the search read. Why: the compress process's own timing, after training, read a
    trained 106-MMAC OpenVINO INT8 file at 0.739 ms where the runner read its untrained candidate at 0.580 and,
    afterwards on a slower host, the trained model at 0.57-0.62 ms (vs_peers 1/2 budget, Xeon, 2026-12-05;
    benchmarks/budget_recheck.py): the bundle failed its own budget on a number no other measurement reproduced.

    Where that first take misses, the files are timed ``BUDGET_TAKES - 1`` more times and judged on each one's
    median p50 (``bench.median_entry``). Why: in the vs_peers run of 2026-12-05 07:31, on a busy shared host,
    one take read a ½-budget bundle's OpenVINO INT8 file at 0.690 ms (budget 0.556, exit 3) that read 0.518 ms
    in the benchmark's own timing and 0.504-0.526 ms timed A/B afterwards, as did the search's candidate."""
    from edgekit.profiling.bench import BenchSettings

    ui.info("[bold]re-time[/bold] the bundle's files with the search's runner (the budget is judged on its clock)")
    settings = BenchSettings(warmup=recipe.profile.warmup, runs=recipe.profile.runs,
                             max_seconds=recipe.profile.max_seconds, threads=threads, latency_only=True)
    return bench_for_budget(out, settings)


def bench_for_budget(out: Path, settings: BenchSettings, remote=None) -> Manifest:
    """Benches the bundle here or on ``remote`` (an ``SshDevice``) and merges the entry; where a latency budget
    is missed at that take, times the files ``BUDGET_TAKES - 1`` more times (latency only) and judges every
    decision on each file's median p50, the first take's accuracy kept (``bench.median_entry``)."""
    from dataclasses import replace

    from edgekit.manifest import read_manifest
    from edgekit.profiling.bench import bench_bundle, median_entry, merge_into_bundle

    takes = [bench_bundle(out, settings, remote=remote)]
    manifest = read_manifest(out)
    final = manifest.search.final if manifest.search is not None else None
    if final is not None and final.met is False and final.p50_ms is not None:
        where = remote.describe() if remote is not None else "this host"
        ui.info(f"re-time: {final.artifact} read {final.p50_ms:.3f} ms on {where} against the "
                f"{manifest.search.budget_ms:g}-ms budget; timing the files {BUDGET_TAKES - 1} more times, the "
                f"budget is judged on the median")
        again = replace(settings, latency_only=True)
        takes += [bench_bundle(out, again, remote=remote, update_bundle=False) for _ in range(BUDGET_TAKES - 1)]
        manifest = merge_into_bundle(out, median_entry(takes))
    return manifest


def run_search(input_model: LoadedModel, data: DataSplits, recipe: Recipe, target: Target, budget: BudgetSettings,
               threads: int, remote) -> tuple[Recipe, Any]:
    """The latency-budget search (edgekit/search/) on a copy of the input model; returns the recipe to train."""
    from edgekit.calibration import draw_calibration
    from edgekit.search import search_budget
    from edgekit.search.timing import make_timer

    calibration = None
    if "int8" in (budget.precisions or target.precisions):
        calibration = draw_calibration(data.train, input_model.spec, budget.calibration_size, recipe.seed).inputs
    timer, measured = make_timer(target, recipe, calibration, budget.runs, budget.max_seconds, threads, remote)
    planned, section = search_budget(copy.deepcopy(input_model), data, recipe, target, budget, timer, measured)
    return planned.model_copy(update={"budget": budget}), section


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for package in ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "nncf", "torch-pruning", "numpy"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return versions
