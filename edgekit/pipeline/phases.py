"""The phases of a run, in order: load → input reference → search → stages → final reference →
compile/profile → (decide, bundle: ``run.py``). Each returns a typed record; the manifest is built from them."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit import ui
from edgekit.compilation import CompileUnit, compile_all, failed_builds, serving_tail
from edgekit.data import DataSplits, from_datasets, load_data, load_data_for
from edgekit.data.imagefolder import load_calibration_folder
from edgekit.errors import EdgekitError
from edgekit.models import LoadedModel, load_model
from edgekit.models.classes import ClassMapping, classes_option, resolve
from edgekit.models.complexity import count_macs, count_params
from edgekit.models.footprint import check_memory
from edgekit.models.in_memory import module_model
from edgekit.models.loaded import state_hash
from edgekit.models.preprocess import parse_preprocess
from edgekit.models.sources import replace_classifier
from edgekit.pipeline.options import CompressOptions
from edgekit.pipeline.stage_cache import cache_get, cache_put, stage_cache_key
from edgekit.profiling.robustness import robustness_section
from edgekit.recipe import BudgetSettings, Recipe
from edgekit.resources import cache_dir
from edgekit.split.deploy import split_section as split_section_of
from edgekit.stages import STAGES, StageContext
from edgekit.target import Target
from edgekit.training import distributed
from edgekit.training.default_teacher import DEFAULT_DATA, default_teacher_path
from edgekit.training.device import current_device
from edgekit.training.evaluate import accuracy_counts, module_logits
from edgekit.vocab import Part, Precision

# The model note (saved in its checkpoint) naming the data a run trained it on.
TRAINED_ON = "trained_on"

NEAR_CHANCE = 1.5   # x the chance level: below it the input model has learnt (almost) nothing

# Val images each stage's after-stage accuracy is read on. It is a progress figure for the stage table (how much
# a stage cost before the training that follows it recovers): a full val pass per stage would cost minutes on an
# ImageNet-sized split. The binomial standard error at 2000 images is at most 1.1 pt.
STAGE_CHECK_IMAGES = 2000


# --- load --------------------------------------------------------------------------------------------------

@dataclass
class Inputs:
    """The model and data the user gave, ready for the pipeline, and the manifest's record of the model."""

    model: LoadedModel
    data: DataSplits
    source: dict


def load_inputs(opts: CompressOptions, batch: int = 1, device: torch.device | None = None,
                trains: bool = True) -> Inputs:
    """Model and data, with the embedded default (digits teacher) when neither is given; a model whose
    activations at the training ``batch`` would not fit ``device``'s memory is refused before any work.
    ``trains``: whether any stage (or the budget search) trains - a run that does not evaluates a flat folder
    whose classes are the model's on all of its images (``resolve_inputs``)."""
    model, data, classes = _resolve(opts, batch, device, trains)
    given = opts.model if isinstance(opts.model, str) else model.source   # a module or the demo: its own name
    source = {"source": given, "sha256": model.sha256, "arch": model.arch, "spec": model.spec.model_dump(mode="json"),
              "params": count_params(model.module), "macs": count_macs(model.module, model.spec),
              "notes": dict(model.notes), "requested": given if opts.model is not None else "default",
              "classes": {**classes.record, "note": classes.note}}
    return Inputs(model, data, source)


def resolve_inputs(opts: CompressOptions, batch: int = 1, device: torch.device | None = None,
                   trains: bool = True) -> tuple[LoadedModel, DataSplits]:
    """(model, data) from strings, modules or datasets (``_resolve``)."""
    model, data, _ = _resolve(opts, batch, device, trains)
    return model, data


def _resolve(opts: CompressOptions, batch: int = 1, device: torch.device | None = None,
             trains: bool = True) -> tuple[LoadedModel, DataSplits, ClassMapping]:
    """(model, data, how the data's classes land on the model's outputs) from strings, modules or datasets.
    The data's classes are mapped onto the model's by name where they are among them (``models.classes``);
    a head is replaced only when they really differ (and said). The model's activations at ``batch`` must
    fit memory (``check_memory``)."""
    if opts.model is None and opts.data is None:
        model_source, data_source = str(default_teacher_path()), DEFAULT_DATA
    elif opts.model is None or opts.data is None:
        missing = "--data" if opts.data is None else "--model"
        raise EdgekitError(f"{missing} is missing", "give both --model and --data, or neither for the built-in demo")
    else:
        model_source, data_source = opts.model, opts.data
    preprocess = parse_preprocess(opts.preprocess) if opts.preprocess is not None else None
    if isinstance(model_source, str):
        model = load_model(model_source, arch=opts.arch, input_size=opts.input_size, trust_pickle=opts.trust_pickle,
                           preprocess=preprocess)
        check_memory(model, batch, device)
        data = _data_for(data_source, model, opts)
    else:   # a module built in Python: its input is the data's (or the spec's), so the data comes first
        if preprocess is not None:
            raise EdgekitError("preprocess= applies to model sources and files, not to a module built in Python",
                               "give spec=ModelSpec(...) with the module's input instead")
        data = _data_for(data_source, None, opts)
        size = opts.input_size or data.image_size
        spec = opts.spec.with_input_size(*size) if opts.spec is not None and opts.input_size else opts.spec
        model = module_model(model_source, spec, data.channels, size)
        check_memory(model, batch, device)
    data, mapping = _match_classes(model, data, opts)
    if model.spec.class_names is None:
        model.spec = model.spec.model_copy(update={"class_names": data.class_names})
    data = _evaluation_split(data, mapping, trains, trained_here=TRAINED_ON in model.notes)
    if opts.calibration is not None:
        s = model.spec
        data.calibration = load_calibration_folder(opts.calibration, s.hw, s.channels, s.resize, s.interpolation)
        data.notes["calibration"] = f"{Path(opts.calibration).resolve()} ({len(data.calibration)} unlabelled images)"
    return model, data, mapping


def _match_classes(model: LoadedModel, data: DataSplits, opts: CompressOptions) -> tuple[DataSplits, ClassMapping]:
    """``--classes`` names the model's outputs; the data's classes are then mapped onto them, kept in an assumed
    order, or the head is replaced (``models.classes.resolve``). Every outcome but identity is said."""
    if opts.classes is not None:
        names, where = classes_option(opts.classes)
        if len(names) != model.spec.num_classes:
            raise EdgekitError(f"{where} names {len(names)} classes but the model has {model.spec.num_classes} "
                               "outputs", "give one name per output, in output order")
        if model.spec.class_names is not None and model.spec.class_names != names:
            model.notes["classes"] = f"{where} replaces the class names the model carried"
        model.spec = model.spec.model_copy(update={"class_names": names})
    mapping = resolve(model.spec.class_names, model.spec.num_classes, data.class_names)
    if mapping.kind == "differ":
        replace_classifier(model, data.num_classes)
        ui.warn(model.notes["head"])
        mapping.note += f"; {model.notes['head']}"
    elif mapping.remaps:
        data = data.remapped(mapping.data_to_model, model.spec.class_names)
        (ui.warn if mapping.kind == "reordered" else ui.info)(mapping.note)
    elif mapping.kind == "assumed" and model.spec.class_names is not None:
        ui.warn(mapping.note)
    return data, mapping


def _evaluation_split(data: DataSplits, mapping: ClassMapping, trains: bool, trained_here: bool) -> DataSplits:
    """A flat folder split by edgekit's own ratio becomes all evaluation when nothing trains and its classes are
    the model's by name (20 labelled photos of a pretrained model are 20 test images, not 4); ``?eval=true``
    asks for it, ``?val=F`` keeps the split. A model edgekit trained (``TRAINED_ON`` in its checkpoint) keeps the
    seeded split: it may have trained on the rest of this very folder."""
    if data.whole is None or data.whole_for_eval is False:
        return data
    if data.whole_for_eval:
        if trains:
            raise EdgekitError("data option eval=true: the recipe trains, and would have no training images",
                               "drop ?eval=true, or use a recipe that only evaluates and compiles (e.g. int8)")
        return data.as_evaluation("asked with ?eval=true")
    if not trains and not trained_here and mapping.kind in ("identity", "mapped", "reordered"):
        return data.as_evaluation("no stage trains and the classes are the model's (?val=F splits it)")
    return data


def _data_for(source: Any, model: LoadedModel | None, opts: CompressOptions) -> DataSplits:
    if isinstance(source, DataSplits):
        return source
    if isinstance(source, (str, Path)):
        source = str(source)
        if model is None:
            return load_data(source, image_size=opts.input_size, skip_broken=opts.skip_broken_images)
        return load_data_for(source, model.spec, skip_broken=opts.skip_broken_images)
    return from_datasets(source)


# --- references --------------------------------------------------------------------------------------------

@dataclass
class Reference:
    """PyTorch's accuracy, params and MACs of a model on the test split (``record``), and its logits."""

    record: dict
    logits: np.ndarray


def measure_input(model: LoadedModel, data: DataSplits) -> Reference:
    """The INPUT reference: the model the user gave, in PyTorch on the test split, before any stage (what
    gates and deploy measure the cost of compression against). Warns when it is near chance there:
    distilling from or pruning an untrained model gives meaningless numbers."""
    ui.info("[bold]input reference[/bold]: PyTorch accuracy of the input model on the test split")
    logits, labels = module_logits(model.module, model.spec, data.test)
    accuracy = accuracy_counts(logits, labels)
    chance = 100.0 / max(model.spec.num_classes, 1)
    if accuracy["top1"] < NEAR_CHANCE * chance:
        ui.warn(f"the input model is near chance on the test split (top-1 {accuracy['top1']:.2f}%, chance "
                f"{chance:.2f}%): is it trained for this data? Distillation from it is meaningless")
    return Reference({"accuracy": {**accuracy, "samples": int(len(labels))},
                      "params": count_params(model.module), "macs": count_macs(model.module, model.spec)}, logits)


def measure_final(final: LoadedModel, data: DataSplits) -> Reference:
    """The FINAL reference: the model the stages produced, in PyTorch on the test split (what quantization and
    each file's conversion are measured against)."""
    ui.info("[bold]reference[/bold]: PyTorch accuracy of the final model on the test split")
    logits, labels = module_logits(final.module, final.spec, data.test)
    return Reference({"accuracy": {**accuracy_counts(logits, labels), "samples": int(len(labels))},
                      "params": count_params(final.module), "macs": count_macs(final.module, final.spec)}, logits)


# --- search ------------------------------------------------------------------------------------------------

def run_search(input_model: LoadedModel, data: DataSplits, recipe: Recipe, target: Target, budget: BudgetSettings,
               threads: int, remote) -> tuple[Recipe, Any]:
    """The latency-budget search (edgekit/search/) on a copy of the input model; returns the recipe to train."""
    from edgekit.calibration import draw_calibration
    from edgekit.search import search_budget
    from edgekit.search.timing import make_timer

    calibration = None
    if Precision.INT8 in (budget.precisions or target.precisions):
        images, source = data.calibration_source()
        calibration = draw_calibration(images, input_model.spec, budget.calibration_size, recipe.seed,
                                       source=source).inputs
    timer, measured = make_timer(target, recipe, calibration, budget.runs, budget.max_seconds, threads, remote)
    planned, section = search_budget(copy.deepcopy(input_model), data, recipe, target, budget, timer, measured)
    return planned.model_copy(update={"budget": budget}), section


# --- stages ------------------------------------------------------------------------------------------------

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
        if recipe.seed and "seed" in type(params).model_fields and "seed" not in entry.params:
            # the recipe's seed reaches the stage's training (shuffling, augmentation), not only the global RNGs:
            # ``train`` reseeds from its own ``seed``, so without this every recipe seed trained the same model
            params = params.model_copy(update={"seed": recipe.seed})
        key = stage_cache_key(model, teacher_hash, index, entry.name, params.model_dump(mode="json"),
                              data_fingerprint, recipe.seed)
        params_before, macs_before = count_params(model.module), count_macs(model.module, model.spec)
        cached_model, cached_metrics = cache_get(key) if use_cache else (None, None)
        ui.info(f"[bold]stage {index + 1}/{len(recipe.stages)}: {entry.name}[/bold]"
                + (" (cached)" if cached_metrics is not None else ""))
        t0 = time.perf_counter()
        if cached_metrics is not None:
            if cached_model is not None:
                model = cached_model
            metrics = cached_metrics
        else:
            torch.manual_seed(recipe.seed + index)
            ctx = StageContext(model=model, teacher=teacher, data=data, target=target,
                               work_dir=cache_dir("work", key), seed=recipe.seed, resume=use_cache and resume,
                               device=current_device())
            result = stage_cls(params).run(ctx)
            results.append(result)
            model, metrics = result.model, result.metrics
            if use_cache and distributed.is_main():
                cache_put(key, model if result.changed_model else None, metrics)
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


# --- compile and profile -----------------------------------------------------------------------------------

@dataclass
class Compiled:
    """Every file built for the target and what was measured of it, plus the sections that go with them."""

    artifacts: list
    skipped: list
    sections: dict = field(default_factory=dict)   # calibration, precision decisions (compile_all)
    split: Any = None
    robustness: Any = None


def compile_and_profile(units: list[CompileUnit], skipped: list, final: LoadedModel, input_model: LoadedModel,
                        data: DataSplits, recipe: Recipe, server_target: Target, stage_records: list[dict],
                        bundle_dir: Path, threads: int, reference: Reference, clock) -> Compiled:
    """Compiles every unit with the target's backends into ``bundle_dir`` and measures each file through its
    runtime; a split model gets its head/tail section, a recipe with ``robustness:`` its robustness section."""
    with clock("compile_profile"):
        artifacts, sections = compile_all(units, data, recipe, bundle_dir, threads, reference.logits,
                                          reference.record["accuracy"]["top1"])
    compiled = Compiled(artifacts, skipped + failed_builds(units), sections)   # with backends that dropped out
    by_part = {u.part: u.artifacts for u in units}
    if Part.HEAD in by_part:   # a bottleneck stage: head for the device, tail for the server
        stage = next((r["metrics"] for r in reversed(stage_records) if r["name"] == "bottleneck"), {})
        compiled.split = split_section_of(final, by_part[Part.HEAD], by_part[Part.TAIL], serving_tail(by_part[Part.TAIL]),
                                          server_target.name, stage)
    if recipe.robustness:
        with clock("robustness"):
            compiled.robustness = robustness_section(input_model, final,
                                                     [a for a in artifacts if a.part is not Part.INPUT],
                                                     bundle_dir, data.test, recipe.robustness, threads)
    return compiled
