"""Compile + profile: one path for every compile unit, i.e. a whole model, or a split model's head
(device target) and tail (server target). Every unit goes through the same steps:

- plan: (backend, precision) pairs for its target, with what is skipped and why;
- request: one ``CompileRequest`` factory (target, options, calibration, validation, artifacts/<part>/);
- calibration: one set (``calibration.npz`` in the bundle, sha256 in the manifest) drawn when anything
  is INT8; a head calibrates on its images, a tail on the PyTorch head's outputs of them after the
  uint8 transfer round trip (what the server will receive);
- profiling through the artifact's runtime: batch-1 latency, the unit's artifacts timed in alternation (a
  head alone), then accuracy (a head's through head -> uint8 -> tail) and agreement with the PyTorch model
  (with ``profile.score: needed``, only for the files a decision can choose: ``score_unit``); TensorRT
  artifacts cannot run here: their accuracy is measured on ONNX Runtime from the very ONNX TensorRT will
  build from (labelled as such), and their latency is a roofline estimate of the unit's own model,
  labelled ``estimated``;
- estimates for a device we cannot reach (of the unit's model: a head's estimate is the head's);
- ``precision: auto``: per part and backend, every precision the target supports is compiled and
  measured; choosing among them is ``edgekit.decisions`` (run on the whole bundle by the pipeline and
  again by ``edgekit bench``); here only a split tail is chosen, because its heads are scored through it.
- the input model (part ``input``): compiled once at FP32 for the target's first CPU runtime, so the
  report compares the deployed artifact with what the user started from, file against file.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from torch.utils.data import Dataset

from edgekit import ui
from edgekit.backends import BACKENDS, Artifact, CompileRequest, Session
from edgekit.calibration import draw_calibration, save_calibration
from edgekit.data import DataSplits
from edgekit.data.core import prepared_batches
from edgekit.decision_records import NotScored, Skipped
from edgekit.errors import EdgekitError, first_line
from edgekit.decisions import DEFAULT_AUTO_DROP, MEASURED_TIE, drop, select_precisions
from edgekit.mixed_precision import Bound, attach_mixed_costs, search_mixed, validation_set
from edgekit.models.loaded import LoadedModel
from edgekit.profiling.artifacts import agreement, session_logits
from edgekit.profiling.estimate import attach_estimates, estimate_module
from edgekit.runtime import alternating_latency
from edgekit.recipe import ProfileSettings, Recipe
from edgekit.spec import ModelSpec
from edgekit.split import deploy as split_deploy
from edgekit.split.model import is_split_model
from edgekit.target import Target
from edgekit.training.evaluate import accuracy_counts
from edgekit.vocab import Part, Precision, PrecisionChoice, ReasonCode

VALIDATION_IMAGES = 1000  # cap for accuracy-aware quantization's validation loop
# The input model's own artifact is a latency and size baseline (the PyTorch input reference is its accuracy):
# scored on this many test images it still checks the export (agreement with the PyTorch logits, image by
# image), where the full split costs as much as the input reference itself (close to a minute on a ResNet-18-
# sized model) and 1000 images still several seconds, and a wrong export shows in the agreement of far fewer.
INPUT_CHECK_IMAGES = 250
TRT_PROXY = "onnxruntime on the TensorRT input ONNX, Q/DQ simulated in float (proxy; TensorRT not here)"


@dataclass
class CompileUnit:
    """One model to compile for one target: the whole model, or a split model's head or tail."""

    part: Part
    model: LoadedModel                          # what the backends compile (its spec is its input)
    target: Target
    plan: list[tuple[str, Precision]]           # (backend, precision)
    eval_data: Dataset                          # the test split as this part's runtime sees it
    eval_spec: ModelSpec                        # prepares eval_data (identity for a tail's bottlenecks)
    to_input: Callable[[np.ndarray], np.ndarray] | None = None   # model-ready images -> this part's input
    outputs_logits: bool = True                 # False for a head: scored through the split pair
    transfer: dict | None = None                # a head's uint8 transfer (scale, zero point) to the tail
    ref_logits: np.ndarray | None = None        # what agreement is against (default: the final model's)
    artifacts: list[Artifact] = field(default_factory=list)
    failed: list[Skipped] = field(default_factory=list)   # (backend, precision) that raised, with the reason

    @property
    def subdir(self) -> str:
        return "" if self.part == Part.WHOLE else str(self.part)

    def artifact_name(self, name: str) -> str:
        return name if self.part == Part.WHOLE else f"{self.part}-{name}"

    def inputs(self, images: np.ndarray | None) -> np.ndarray | None:
        return images if images is None or self.to_input is None else self.to_input(images)


def expand_auto(recipe: Recipe, target: Target) -> Recipe:
    """``precisions: [auto]`` -> the target's precisions (the candidates), ``target`` -> its default;
    duplicates dropped (``[fp32, target]`` on an fp32 target is one fp32)."""
    asked = recipe.compile.precisions
    expanded: list[Precision] = []
    for p in asked:
        options = {PrecisionChoice.AUTO: list(target.precisions),
                   PrecisionChoice.TARGET: [target.default_precision]}.get(p, [p])
        for q in options:
            if q not in expanded:
                expanded.append(q)
    return recipe.model_copy(update={"compile": recipe.compile.model_copy(update={"precisions": expanded})})


def plan_compilation(recipe: Recipe, target: Target) -> tuple[list[tuple[str, Precision]], list[Skipped]]:
    """(backend, precision) pairs to build, and the ones skipped with a reason."""
    backends = list(recipe.compile.backends or target.backends)
    if "onnxruntime" not in backends:
        backends.append("onnxruntime")  # the universal baseline is always in the bundle
    precisions = [target.default_precision if p == PrecisionChoice.TARGET else p for p in recipe.compile.precisions]
    plan, skipped = [], []
    for backend_name in backends:
        if backend_name not in BACKENDS:
            skipped.append(Skipped(backend=backend_name, precision="*", reason=ReasonCode.UNKNOWN_BACKEND))
            continue
        backend = BACKENDS.get(backend_name)
        if not backend.available():
            skipped.append(Skipped(backend=backend_name, precision="*", reason=ReasonCode.RUNTIME_NOT_INSTALLED,
                                   extra=backend.extra))
            continue
        for precision in precisions:
            if precision not in target.precisions:
                skipped.append(Skipped(backend=backend_name, precision=precision,
                                       reason=ReasonCode.TARGET_LACKS_PRECISION, target=target.name))
            elif precision not in backend.precisions:
                skipped.append(Skipped(backend=backend_name, precision=precision,
                                       reason=ReasonCode.BACKEND_LACKS_PRECISION))
            else:
                plan.append((backend_name, precision))
    return plan, skipped


INPUT_BACKENDS = ("openvino", "onnxruntime")   # cheap to build for any model; onnxruntime always is


def input_backend(target: Target) -> str:
    """The runtime the input model's FP32 reference artifact is built for: the target's first backend
    when it is a cheap CPU one (OpenVINO, ONNX Runtime) and installed, else ONNX Runtime."""
    for name in target.backends:
        if name in INPUT_BACKENDS and name in BACKENDS and BACKENDS.get(name).available():
            return name
    return "onnxruntime"


def input_unit(model: LoadedModel, data: DataSplits, target: Target, ref_logits: np.ndarray | None) -> CompileUnit:
    """The input model as a compile unit of its own (part ``input``), FP32 only, scored on the first
    ``INPUT_CHECK_IMAGES`` test images (``ref_logits``: the PyTorch input reference's, for the whole split)."""
    n = min(INPUT_CHECK_IMAGES, len(data.test))
    images = data.test if n == len(data.test) else data.test.subset(np.arange(n))
    return CompileUnit(Part.INPUT, model, target, [(input_backend(target), Precision.FP32)], images, model.spec,
                       ref_logits=None if ref_logits is None else ref_logits[:n])


def build_units(final: LoadedModel, data: DataSplits, recipe: Recipe, target: Target, server_target: Target,
                input_model: LoadedModel | None = None, input_logits: np.ndarray | None = None
                ) -> tuple[list[CompileUnit], list[Skipped]]:
    """The compile units of the final model (and of the input model, when given) and what is skipped.
    Order matters: a split model's tail is compiled and chosen before its heads, whose accuracy is
    measured through it."""
    plan, skipped = plan_compilation(expand_auto(recipe, target), target)  # auto -> the target's candidates
    units = [CompileUnit(Part.WHOLE, final, target, plan, data.test, final.spec)]
    if input_model is not None:
        units.append(input_unit(input_model, data, target, input_logits))
    if not is_split_model(final.module):
        return units, skipped
    head, tail = split_deploy.split_parts(final)
    to_tail = split_deploy.TailInputs(final)
    tail_recipe = recipe.model_copy(update={"compile": recipe.compile.model_copy(
        update={"backends": [split_deploy.TAIL_BACKEND]})})
    tail_plan, tail_skipped = plan_compilation(expand_auto(tail_recipe, server_target), server_target)
    units.append(CompileUnit(Part.TAIL, tail, server_target, tail_plan, to_tail.dataset(data.test, final.spec),
                             tail.spec, to_input=to_tail))
    units.append(CompileUnit(Part.HEAD, head, target, plan, data.test, final.spec, outputs_logits=False,
                             transfer=to_tail.quant))
    return units, skipped + [s.model_copy(update={"part": Part.TAIL}) for s in tail_skipped]


def compile_all(units: list[CompileUnit], data: DataSplits, recipe: Recipe, out_dir: Path, threads: int,
                ref_logits: np.ndarray, ref_top1: float) -> tuple[list[Artifact], dict]:
    """Compile and profile every unit (``precision: auto``: a split tail is chosen here, its heads are
    scored through it); returns (artifacts, extra manifest sections: calibration)."""
    extra: dict = {}
    calibration, validation = None, None
    whole = units[0].model
    if any(p == Precision.INT8 for unit in units for _, p in unit.plan):
        seed = recipe.compile.calibration_seed if recipe.compile.calibration_seed is not None else recipe.seed
        images, source = data.calibration_source()
        cal = draw_calibration(images, whole.spec, recipe.compile.calibration_size, seed, source=source)
        sha = save_calibration(cal, out_dir / "calibration.npz")
        calibration = cal.inputs
        extra["calibration"] = {**cal.meta, "path": "calibration.npz", "sha256": sha,
                                "class_counts": cal.class_counts()}
        if any(unit.part is Part.HEAD for unit in units):   # a split model (the input unit is not a part)
            extra["calibration"]["parts"] = {"head": "the images of calibration.npz",
                                             "tail": "the PyTorch head's outputs of them after the uint8 transfer"}
    auto = PrecisionChoice.AUTO in recipe.compile.precisions
    # With precision: auto the bound is enforced by the selection, on the full test split; NNCF's accuracy
    # control would enforce it a second time on 1000 val images (a standard error of ~1.2 pt at 80% top-1:
    # it read a 0.6 pt drop, ranked 30 quantizers and reverted 2 to float, 18 s instead of ~2 s, on a model
    # whose file the test split then put 0.47 pt below FP32). Without
    # auto, an explicit int8 with a bound keeps NNCF's accuracy control, unless compile.accuracy_control is off
    # (a latency-budget plan: its file must be built as the search's candidate was).
    if (calibration is not None and recipe.compile.max_accuracy_drop is not None and not auto
            and recipe.compile.accuracy_control):
        validation = _validation(data, whole)
    bound = recipe.compile.max_accuracy_drop if recipe.compile.max_accuracy_drop is not None else DEFAULT_AUTO_DROP
    tail_session: Session | None = None   # the serving tail, which a head is scored through
    try:
        for unit in units:
            request = make_request(unit, out_dir, recipe, calibration, validation)
            if unit.part == Part.HEAD:
                tail_session = _open_serving_tail(units, out_dir, threads)
            for backend_name, precision in unit.plan:
                ui.info(f"[bold]compile[/bold] {unit.artifact_name(backend_name)} {precision}"
                        + (f" (target {unit.target.name})" if unit.part == Part.TAIL else ""))
                t0 = time.perf_counter()
                written = _files_under(request.artifacts_dir)
                try:
                    artifact = BACKENDS.get(backend_name)().compile(unit.model, precision, request)
                except Exception as err:  # noqa: BLE001 - one backend's failure is not the others'
                    _remove_new_files(request.artifacts_dir, written)
                    drop_out(unit, backend_name, precision, "compile", err)
                    continue
                artifact = artifact.model_copy(update={"name": unit.artifact_name(artifact.name)})
                if unit.part != Part.WHOLE:
                    artifact.meta["split_part"] = unit.part
                artifact.meta["seconds"] = {"compile": round(time.perf_counter() - t0, 2), "profile": 0.0}
                unit.artifacts.append(artifact)
            if unit.part == Part.WHOLE and not unit.artifacts:
                raise nothing_built(unit)
            wants_mixed = auto or recipe.compile.min_agreement is not None   # an agreement floor asked for
            if wants_mixed and unit.part == Part.WHOLE and recipe.compile.max_float_layers > 0:
                add_mixed(unit, request, out_dir, data, recipe, bound, threads)
            time_unit(unit, out_dir, recipe.profile, threads)
            attach_mixed_costs(unit.artifacts)
            needed_only = auto and recipe.profile.score == "needed" and unit.part == Part.WHOLE
            score_unit(unit, out_dir, recipe.profile, threads,
                       unit.ref_logits if unit.ref_logits is not None else ref_logits, tail_session,
                       (bound, ref_top1) if needed_only else None)
            if unit.part == Part.WHOLE and not unit.artifacts:
                raise nothing_built(unit)
            attach_estimates(unit.artifacts, unit.model, unit.target)  # labelled; only where nothing is measured
            if auto and unit.part == Part.TAIL:   # the server's tail (this host): measured here
                select_precisions(unit.artifacts, unit.target, ref_top1, bound)
    finally:
        if tail_session is not None:
            tail_session.close()
    return [a for unit in units for a in unit.artifacts], extra


def add_mixed(unit: CompileUnit, request: CompileRequest, out_dir: Path, data: DataSplits, recipe: Recipe,
              bound: float, threads: int) -> None:
    """``precision: auto`` or a ``min_agreement`` floor: per backend with an INT8 and an FP32 file that run here, a
    mixed INT8/float file when the INT8 one misses the bound on the validation split (``edgekit.mixed_precision``)."""
    pairs = []
    for backend in dict.fromkeys(a.backend for a in unit.artifacts):
        if not BACKENDS.get(backend).mixed:
            continue
        files = {a.precision: a for a in unit.artifacts if a.backend == backend and a.runnable_here}
        if Precision.INT8 in files and Precision.FP32 in files:
            pairs.append((files[Precision.FP32], files[Precision.INT8]))
    if not pairs or len(data.val) == 0:
        return
    val = validation_set(unit.model, data.val)
    needed = Bound(bound, recipe.compile.min_agreement)
    for fp32, int8 in pairs:
        t0 = time.perf_counter()
        written = _files_under(request.artifacts_dir)
        try:
            mixed = search_mixed(unit.model, fp32, int8, request, out_dir, val, needed,
                                 recipe.compile.max_float_layers, threads)
        except Exception as err:  # noqa: BLE001 - the plain INT8 and FP32 files stay candidates
            _remove_new_files(request.artifacts_dir, written)
            drop_out(unit, int8.backend, Precision.MIXED, "mixed precision", err)
            continue
        if mixed is not None:
            mixed.meta["seconds"] = {"compile": round(time.perf_counter() - t0, 2), "profile": 0.0}
            unit.artifacts.append(mixed)


def drop_out(unit: CompileUnit, backend: str, precision: str, what: str, err: BaseException,
             artifact: Artifact | None = None, bundle_root: Path | None = None) -> None:
    """A (backend, precision) of ``unit`` that failed at ``what`` (compile, load, run, score) leaves the
    bundle with its one-line reason (the manifest's ``skipped``) while the others go on; a built
    ``artifact`` leaves with its files (those no other artifact of the unit lists)."""
    if isinstance(err, MemoryError):
        raise err
    if artifact is not None and artifact in unit.artifacts:
        unit.artifacts.remove(artifact)
        if bundle_root is not None:
            kept = {f for a in unit.artifacts for f in a.files}
            for f in set(artifact.files) - kept:
                (bundle_root / f).unlink(missing_ok=True)
    text = first_line(err, typed=not isinstance(err, EdgekitError))
    detail = f"{what} failed: {text}"
    unit.failed.append(Skipped(backend=backend, precision=precision, reason=ReasonCode.BUILD_FAILED, detail=detail,
                               part=None if unit.part == Part.WHOLE else unit.part))
    ui.warn(f"{unit.artifact_name(backend)} {precision}: {detail} (left out; the other backends go on)")


def failed_builds(units: list[CompileUnit]) -> list[Skipped]:
    """Every unit's drop-outs, for the manifest's ``skipped``."""
    return [f for unit in units for f in unit.failed]


def nothing_built(unit: CompileUnit) -> EdgekitError:
    """The one error when no (backend, precision) of the final model could be built and run."""
    reasons = "; ".join(f"{f.backend} {f.precision}: {f.detail}" for f in unit.failed) or "nothing planned"
    return EdgekitError(f"no artifact could be built for target {unit.target.name} ({reasons})",
                        "try another target or precision (--target, compile.precisions), or an input size the "
                        "exporters support (--input-size)")


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


def _remove_new_files(folder: Path, before: set[Path]) -> None:
    """What a failed backend wrote: nothing half-written stays in the bundle."""
    for path in sorted(_files_under(folder) - before, key=lambda p: len(p.parts)):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


def make_request(unit: CompileUnit, out_dir: Path, recipe: Recipe, calibration: np.ndarray | None,
                 validation: tuple[np.ndarray, np.ndarray] | None) -> CompileRequest:
    """The one request factory: the unit's target, inputs and folder, the recipe's options."""
    needs_int8 = any(p == Precision.INT8 for _, p in unit.plan)
    unit_validation = None
    if validation is not None and unit.outputs_logits:  # labelled data only means something for logits
        unit_validation = (unit.inputs(validation[0]), validation[1])
    return CompileRequest(out_dir=out_dir, target=unit.target, options=recipe.compile.options.for_backends(),
                          calibration=unit.inputs(calibration) if needs_int8 else None,
                          validation=unit_validation, max_accuracy_drop=recipe.compile.max_accuracy_drop,
                          subdir=unit.subdir)


def serving_tail(artifacts: list[Artifact]) -> Artifact | None:
    """The tail the server runs: the one precision selection chose, else the first FP32 one."""
    runnable = [a for a in artifacts if a.runnable_here]
    return (next((a for a in runnable if a.meta.get("chosen")), None)
            or next((a for a in runnable if a.precision == Precision.FP32), None)
            or (runnable[0] if runnable else None))


def _open_serving_tail(units: list[CompileUnit], out_dir: Path, threads: int) -> Session:
    tail = serving_tail(next(u for u in units if u.part == Part.TAIL).artifacts)
    if tail is None:
        from edgekit.errors import EdgekitError

        raise EdgekitError("no tail artifact runs on this host, so the split pair cannot be measured")
    return BACKENDS.get(tail.backend)().load(tail, out_dir, threads)


def score_unit(unit: CompileUnit, out_dir: Path, settings: ProfileSettings, threads: int,
               ref_logits: np.ndarray | None, tail: Session | None, needed: tuple[float, float | None] | None) -> None:
    """Score the unit's artifacts on its test images (``profile_unit_artifact``), after ``time_unit``.

    ``needed`` = (accuracy bound, final FP32 top-1): score only what precision selection can choose. Per
    backend, in order of measured p50: once a file is within the bound, a file more than ``MEASURED_TIE``
    slower can never be chosen (selection takes the fastest within the bound, a measured near-tie the more
    accurate), so it is not scored and says why. Why: on a 557-MMAC ResNet's pruned student each FP32 file
    took seconds over 10k test images while INT8 ran 2.5x faster within the bound; on a
    user's ImageNet-sized val split it is minutes per file. Only where every file was timed here: an
    estimate's order is not known well enough to skip on, and a device bench re-decides."""
    order = list(unit.artifacts)
    timed_here = all(((a.metrics.get("latency") or {}).get("measured") == "host") for a in order)
    if needed is not None and (not timed_here or needed[1] is None or unit.target.reach != "local"):
        needed = None
    if needed is not None:
        order.sort(key=lambda a: a.metrics["latency"]["p50_ms"])
    within: dict[str, Artifact] = {}   # backend -> its fastest file within the bound
    for artifact in order:
        fastest = within.get(artifact.backend)
        if fastest is not None:
            ratio = artifact.metrics["latency"]["p50_ms"] / fastest.metrics["latency"]["p50_ms"]
            if ratio > 1 + MEASURED_TIE:
                artifact.metrics["not_scored"] = NotScored(faster=fastest.name, ratio=round(ratio, 3),
                                                           bound=needed[0]).model_dump()
                ui.info(f"[bold]score[/bold] {artifact.name}: skipped, {ratio:.2f}x slower than {fastest.name}")
                continue
        ui.info(f"[bold]score[/bold] {artifact.name}")
        t0 = time.perf_counter()
        try:
            scored = profile_unit_artifact(unit, artifact, out_dir, settings, threads, ref_logits, tail)
        except Exception as err:  # noqa: BLE001 - a file its runtime cannot run leaves, the others stay
            drop_out(unit, artifact.backend, artifact.precision, "scoring", err, artifact, out_dir)
            continue
        artifact.metrics = {**scored, **artifact.metrics}
        artifact.meta["seconds"]["profile"] = round(artifact.meta["seconds"]["profile"] + time.perf_counter() - t0, 2)
        top1 = (artifact.metrics.get("accuracy") or {}).get("top1")
        d = None if needed is None else drop(top1, needed[1])
        if d is not None and d <= needed[0] and artifact.backend not in within:
            within[artifact.backend] = artifact


def profile_unit_artifact(unit: CompileUnit, artifact: Artifact, out_dir: Path, settings: ProfileSettings,
                          threads: int, ref_logits: np.ndarray | None, tail: Session | None = None) -> dict:
    """Accuracy and agreement of one artifact through its runtime session (the TensorRT proxy for
    TensorRT inputs; their latency is the unit's roofline estimate). A head is scored through
    head -> uint8 -> ``tail``. Latency is ``time_unit``'s, once the unit's artifacts are all compiled.

    Accuracy is scored through a session on every core and latency timed through one at ``threads``: the
    numbers are the runtime's either way, but scoring the full test split at ``--threads 1`` cost minutes per
    artifact on a ResNet-18-sized model."""
    scoring_threads = max(threads, os.cpu_count() or 1)
    if artifact.runnable_here:
        session, proxy = BACKENDS.get(artifact.backend)().load(artifact, out_dir, scoring_threads), None
    elif artifact.backend == "tensorrt":
        from edgekit.backends.onnxruntime import OrtSession
        # Q/DQ simulated in float: TensorRT's int8 math has no U8S8 saturation; ORT's int8 kernels on an x86
        # without VNNI do (a ResNet-18-style QDQ model read 3 points low through them).
        session, proxy = (OrtSession(out_dir / artifact.meta["build"]["onnx"], scoring_threads, simulate_qdq=True),
                          TRT_PROXY)
    else:
        return {}
    try:
        scored = session if unit.outputs_logits else split_deploy.PairSession(session, tail, unit.transfer)
        logits, labels = session_logits(scored, unit.eval_spec, unit.eval_data, settings.eval_batch)
        accuracy = {**accuracy_counts(logits, labels), "samples": int(len(labels))}
        if proxy:
            accuracy["measured"] = proxy
        metrics: dict = {"accuracy": accuracy}
        if not unit.outputs_logits:
            metrics["split_accuracy"] = accuracy   # of head + 8-bit transfer + tail
        if ref_logits is not None:
            metrics["agreement"] = agreement(logits, ref_logits)
            if unit.part == Part.INPUT:   # the PyTorch input reference on the same images: its Δ compares like with like
                accuracy["reference_top1"] = accuracy_counts(ref_logits, labels)["top1"]
        if proxy is not None:
            metrics.update(_estimated_latency(unit, artifact))
    finally:
        session.close()
    return metrics


def time_unit(unit: CompileUnit, out_dir: Path, settings: ProfileSettings, threads: int) -> None:
    """Batch-1 latency of the unit's artifacts that run here, timed in alternation at ``threads``
    (``alternating_latency``): they are the candidates precision selection and deploy compare, so they
    are timed under the same load. Each artifact's ``meta.seconds.profile`` gets its share."""
    timed = [a for a in unit.artifacts if a.runnable_here]
    if not timed:
        return
    ui.info(f"[bold]time[/bold] {', '.join(a.name for a in timed)} (batch {settings.batch}, {threads} threads, "
            "in alternation)")
    t0 = time.perf_counter()
    sessions: dict[str, Session] = {}
    try:
        sample = next(prepared_batches(unit.eval_data, unit.eval_spec, settings.batch))[0].numpy()
        for a in list(timed):
            try:   # opened and run once here: a file its runtime cannot load or run leaves alone
                session = BACKENDS.get(a.backend)().load(a, out_dir, threads)
            except Exception as err:  # noqa: BLE001
                drop_out(unit, a.backend, a.precision, "loading", err, a, out_dir)
                timed.remove(a)
                continue
            sessions[a.name] = session
            try:
                session.run(sample)
            except Exception as err:  # noqa: BLE001
                drop_out(unit, a.backend, a.precision, "running", err, a, out_dir)
                timed.remove(a)
        if not timed:
            return
        stats = alternating_latency({a.name: sessions[a.name].run for a in timed}, sample, settings.warmup,
                                    settings.runs, settings.max_seconds)
        share = (time.perf_counter() - t0) / len(timed)
        for a in timed:
            keep = {k: v for k, v in stats[a.name].items() if k != "round_p50_ms"}
            a.metrics["latency"] = {**keep, "threads": threads, "measured": "host",
                                    "alternated_with": [b.name for b in timed if b is not a]}
            a.metrics["session"] = sessions[a.name].info
            a.meta["seconds"]["profile"] = round(a.meta["seconds"]["profile"] + share, 2)
    finally:
        for s in reversed(sessions.values()):   # last opened, first closed: how runtimes nest their state
            s.close()


def _estimated_latency(unit: CompileUnit, artifact: Artifact) -> dict:
    """The unit's own roofline estimate as its latency (so ``precision: auto`` can rank TensorRT)."""
    try:
        est = estimate_module(unit.model.module, unit.model.spec, unit.target, artifact.precision,
                              backend=artifact.backend)
    except Exception:  # noqa: BLE001 - no estimate: auto then cannot rank this candidate ("not measured")
        return {}
    return {"latency": {"p50_ms": est["latency_ms"], "batch": est.get("batch", 1), "measured": "estimated",
                        "estimator": "edgekit.profiling.estimate (see metrics.estimate)"}}


def _validation(data: DataSplits, model: LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for x, y in prepared_batches(data.val, model.spec, 256, VALIDATION_IMAGES):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)
