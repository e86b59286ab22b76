"""Compile + profile every planned artifact, with what quantization adds around it:

- a calibration set (``calibration.npz`` in the bundle, sha256 in the manifest) when anything is INT8;
- labelled validation data for accuracy-aware quantization when the recipe bounds the drop;
- ``precision: auto``: every precision the target supports is compiled and measured through its
  runtime; per backend the fastest candidate whose top-1 drop vs the PyTorch reference is within
  ``max_accuracy_drop`` (default 1.0 point) is marked ``chosen`` with the reason, and the others
  stay in the bundle with why they lost. INT8 is not always faster (MobileNetV3 on XNNPACK), so
  the choice is measured, never assumed.

TensorRT artifacts cannot run here: their accuracy is measured on ONNX Runtime from the very ONNX
TensorRT will build from (labelled as such), and their latency is a roofline estimate from the
target's figures, labelled ``estimated``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit import ui
from edgekit.backends import BACKENDS, Artifact, CompileRequest
from edgekit.calibration import draw_calibration, save_calibration
from edgekit.data import DataSplits
from edgekit.data.core import prepared_batches
from edgekit.models.loaded import LoadedModel
from edgekit.profiling.artifacts import agreement, profile_artifact, session_logits
from edgekit.recipe import Recipe
from edgekit.targets import Target
from edgekit.training.evaluate import accuracy_counts

DEFAULT_AUTO_DROP = 1.0   # percentage points, when the recipe sets no max_accuracy_drop
VALIDATION_IMAGES = 1000  # cap for accuracy-aware quantization's validation loop


def expand_auto(recipe: Recipe, target: Target) -> Recipe:
    """``precisions: [auto]`` -> the target's precisions (the candidates), ``target`` -> its default;
    duplicates dropped (``[fp32, target]`` on an fp32 target is one fp32)."""
    asked = recipe.compile.precisions
    expanded: list[str] = []
    for p in asked:
        options = {"auto": list(target.precisions), "target": [target.default_precision]}.get(p, [p])
        for q in options:
            if q not in expanded:
                expanded.append(q)
    return recipe.model_copy(update={"compile": recipe.compile.model_copy(update={"precisions": expanded})})


def compile_all(final: LoadedModel, data: DataSplits, recipe: Recipe, target: Target, plan: list[tuple[str, str]],
                out_dir: Path, threads: int, ref_logits: np.ndarray, ref_top1: float) -> tuple[list[Artifact], dict]:
    """Compile and profile ``plan``; returns (artifacts, extra manifest sections)."""
    extra: dict = {}
    request = CompileRequest(out_dir=out_dir, target=target, options=recipe.compile.options.for_backends(),
                             max_accuracy_drop=recipe.compile.max_accuracy_drop)
    if any(p == "int8" for _, p in plan):
        seed = recipe.compile.calibration_seed if recipe.compile.calibration_seed is not None else recipe.seed
        cal = draw_calibration(data.train, final.spec, recipe.compile.calibration_size, seed)
        sha = save_calibration(cal, out_dir / "calibration.npz")
        request.calibration = cal.inputs
        extra["calibration"] = {**cal.meta, "path": "calibration.npz", "sha256": sha,
                                "class_counts": cal.class_counts()}
        if recipe.compile.max_accuracy_drop is not None:
            request.validation = _validation(data, final)
    artifacts: list[Artifact] = []
    for backend_name, precision in plan:
        ui.info(f"[bold]compile[/bold] {backend_name} {precision}")
        artifact = BACKENDS.get(backend_name)().compile(final, precision, request)
        if artifact.runnable_here:
            ui.info(f"[bold]profile[/bold] {artifact.name} ({threads} threads)")
            artifact.metrics = profile_artifact(artifact, out_dir, final.spec, data.test, recipe.profile,
                                                threads, ref_logits)
        elif backend_name == "tensorrt":
            artifact.metrics = _tensorrt_proxy(artifact, out_dir, final, data, recipe, target, threads, ref_logits)
        artifacts.append(artifact)
    if "auto" in recipe.compile.precisions:
        bound = recipe.compile.max_accuracy_drop if recipe.compile.max_accuracy_drop is not None else DEFAULT_AUTO_DROP
        extra["precision_selection"] = select_precisions(artifacts, ref_top1, bound)
        extra["deploy"] = recommend(extra["precision_selection"])
    return artifacts, extra


def recommend(decisions: list[dict]) -> dict | None:
    """The artifact to deploy: of each backend's chosen candidate (all within the accuracy bound, or
    the most accurate where none is), the fastest by p50. Why: a user deploying to an x86 box wants
    one answer, not one per runtime; the other backends stay in the bundle for devices without it."""
    chosen = [next(r for r in d["candidates"] if r["chosen"]) for d in decisions if d["chosen"]]
    timed = [r for r in chosen if r["p50_ms"] is not None]
    if not timed:
        return None
    best = min(timed, key=lambda r: (not r["eligible"], r["p50_ms"]))
    others = ", ".join(f"{r['artifact']} {r['p50_ms']:.3f} ms" for r in timed if r is not best)
    return {"artifact": best["artifact"], "top1": best["top1"], "drop": best["drop"], "p50_ms": best["p50_ms"],
            "latency_source": best["latency_source"],
            "reason": f"fastest per-backend choice (p50 {best['p50_ms']:.3f} ms {best['latency_source']})"
                      + (f"; others: {others}" if others else "")}


def _validation(data: DataSplits, model: LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for x, y in prepared_batches(data.val, model.spec, 256, VALIDATION_IMAGES):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def _tensorrt_proxy(artifact: Artifact, out_dir: Path, model: LoadedModel, data: DataSplits, recipe: Recipe,
                    target: Target, threads: int, ref_logits: np.ndarray) -> dict:
    """Accuracy of TensorRT's input ONNX on ONNX Runtime, and a labelled roofline latency estimate."""
    from edgekit.backends.onnxruntime import OrtSession
    # Q/DQ simulated in float: TensorRT's int8 math has no U8S8 saturation; ORT's int8 kernels on an x86
    # without VNNI do (a ResNet-18-style QDQ model read 3 points low through them).
    session = OrtSession(out_dir / artifact.meta["build"]["onnx"], threads, simulate_qdq=True)
    try:
        logits, labels = session_logits(session, model.spec, data.test, recipe.profile.eval_batch)
    finally:
        session.close()
    metrics: dict = {"accuracy": {**accuracy_counts(logits, labels), "samples": int(len(labels)),
                                  "measured": "onnxruntime on the TensorRT input ONNX, Q/DQ simulated in float "
                                              "(proxy; TensorRT not here)"},
                     "agreement": agreement(logits, ref_logits)}
    try:  # the project's device estimator (profiling/estimate.py), for precision: auto on TensorRT
        from edgekit.profiling.estimate import estimate_module

        est = estimate_module(model.module, model.spec, target, artifact.precision)
        metrics["latency"] = {"p50_ms": est["latency_ms"], "batch": est.get("batch", 1), "measured": "estimated",
                              "estimator": "edgekit.profiling.estimate (see metrics.estimate)"}
    except Exception:  # noqa: BLE001 - no estimate: auto then cannot rank this candidate ("not measured")
        pass
    return metrics


def select_precisions(artifacts: list[Artifact], ref_top1: float, max_drop: float) -> list[dict]:
    """Per backend: the fastest candidate within ``max_drop`` points of the reference. Marks the
    winner's ``meta.chosen``/``meta.chosen_reason`` and returns the decision table for the manifest."""
    decisions = []
    for backend in dict.fromkeys(a.backend for a in artifacts):
        group = [a for a in artifacts if a.backend == backend]
        rows = []
        for a in group:
            top1 = a.metrics.get("accuracy", {}).get("top1")
            p50 = a.metrics.get("latency", {}).get("p50_ms")
            drop = None if top1 is None else round(ref_top1 - top1, 3)
            rows.append({"artifact": a.name, "precision": a.precision, "top1": top1, "drop": drop, "p50_ms": p50,
                         "latency_source": a.metrics.get("latency", {}).get("measured", "none"),
                         "eligible": drop is not None and p50 is not None and drop <= max_drop})
        eligible = [r for r in rows if r["eligible"]]
        if eligible:
            best = min(eligible, key=lambda r: r["p50_ms"])
            reason = (f"fastest of {len(eligible)} candidate(s) within {max_drop} pt "
                      f"(p50 {best['p50_ms']:.3f} ms {best['latency_source']}, drop {best['drop']:+.2f} pt)")
        else:
            measured = [r for r in rows if r["top1"] is not None]
            if not measured:
                decisions.append({"backend": backend, "chosen": None, "max_accuracy_drop": max_drop,
                                  "reason": "no candidate could be measured", "candidates": rows})
                continue
            best = max(measured, key=lambda r: r["top1"])
            reason = f"no candidate within {max_drop} pt; kept the most accurate ({best['precision']})"
        for r in rows:
            r["chosen"] = r is best
            if r is best:
                r["why"] = reason
            elif r["drop"] is None or r["p50_ms"] is None:
                r["why"] = "not measured"
            elif r["drop"] > max_drop:
                r["why"] = f"accuracy drop {r['drop']:+.2f} pt > {max_drop} pt"
            else:
                r["why"] = f"slower: p50 {r['p50_ms']:.3f} ms vs {best['p50_ms']:.3f} ms"
        for a in group:
            row = next(r for r in rows if r["artifact"] == a.name)
            a.meta["chosen"] = row["chosen"]
            a.meta["selection"] = row["why"]
        decisions.append({"backend": backend, "chosen": best["artifact"], "max_accuracy_drop": max_drop,
                          "reason": reason, "candidates": rows})
    return decisions


def selection_markdown(manifest: dict) -> str:
    """Report section: calibration set and the ``precision: auto`` decisions."""
    out = []
    cal = manifest.get("calibration")
    if cal:
        out += ["## Calibration", "",
                f"{cal['size']} images from the {cal['split']} split (seed {cal['seed']}, "
                f"{'class-balanced' if cal.get('balanced') else 'random'}), `calibration.npz` sha256 "
                f"`{cal['sha256'][:16]}…`", ""]
    deploy = manifest.get("deploy")
    if deploy:
        out += ["## Deploy", "", f"**{deploy['artifact']}** — top-1 {deploy['top1']:.2f}% "
                f"(drop {deploy['drop']:+.2f} pt), {deploy['reason']}", ""]
    for d in manifest.get("precision_selection", []):
        out += [f"## Precision selection: {d['backend']}", "",
                f"Chosen: **{d['chosen']}** — {d['reason']}", "",
                "| artifact | top-1 % | drop pt | p50 ms | latency | chosen | why |", "|---|---|---|---|---|---|---|"]
        for r in d["candidates"]:
            f = lambda v, n=2: "—" if v is None else f"{v:.{n}f}"  # noqa: E731
            out.append(f"| {r['artifact']} | {f(r['top1'])} | {f(r['drop'])} | {f(r['p50_ms'], 3)} | "
                       f"{r['latency_source']} | {'yes' if r['chosen'] else ''} | {r['why']} |")
        out.append("")
    return ("\n" + "\n".join(out) + "\n") if out else ""
