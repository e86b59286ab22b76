"""Compiling a SplitModel as two artifacts and measuring the pair.

- head (encoder, image -> float bottleneck) for each of the device target's planned backends,
  written under ``artifacts/head/``;
- tail (decoder + teacher's remaining layers, dequantized bottleneck -> logits) for the server
  target with ONNX Runtime, under ``artifacts/tail/``.

The 8-bit transfer (quantize on the device, dequantize on the server) is done in NumPy with the
scale/zero point stored in the manifest, exactly as ``TransferQuant`` does it in PyTorch, so the
pair's accuracy through the runtimes can be checked against the PyTorch split model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgekit import ui
from edgekit.backends import BACKENDS, CompileRequest
from edgekit.backends.base import Artifact
from edgekit.data.core import prepared_batches
from edgekit.models.loaded import LoadedModel
from edgekit.profiling.artifacts import agreement
from edgekit.profiling.latency import measure_latency
from edgekit.spec import ModelSpec
from edgekit.split.model import SplitModel
from edgekit.targets import Target
from edgekit.training.evaluate import accuracy_counts

TAIL_BACKEND = "onnxruntime"


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float bottleneck -> uint8 (round half to even, like torch.round)."""
    return np.clip(np.round(x / np.float32(scale)) + zero_point, 0, 255).astype(np.uint8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def tail_spec(model: SplitModel, spec: ModelSpec) -> ModelSpec:
    """The tail's input is the bottleneck; mean/std are identity (no image preprocessing)."""
    return ModelSpec(input_shape=model.cfg.bottleneck_shape, num_classes=spec.num_classes,
                     class_names=spec.class_names)


def _compile_into(backend_name: str, model: LoadedModel, precision: str, bundle_root: Path, part: str,
                  target: Target, options: dict) -> Artifact:
    """Compile with an unmodified backend into a staging dir, then move its files to artifacts/<part>/."""
    staging = bundle_root / f".staging-{part}-{backend_name}-{precision}"
    artifact = BACKENDS.get(backend_name)().compile(model, precision, CompileRequest(staging, target, options=options))
    relocated = []
    for rel in artifact.files:
        new_rel = str(Path("artifacts") / part / Path(rel).relative_to("artifacts"))
        (bundle_root / new_rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging / rel), str(bundle_root / new_rel))
        relocated.append(new_rel)
    shutil.rmtree(staging, ignore_errors=True)
    mapping = dict(zip(artifact.files, relocated))
    return artifact.model_copy(update={
        "name": f"{part}-{artifact.name}", "path": mapping[artifact.path], "files": relocated,
        "sha256": {mapping[k]: v for k, v in artifact.sha256.items()},
        "meta": {**artifact.meta, "split_part": part}})


def compile_split(final: LoadedModel, plan: list[tuple[str, str]], bundle_root: Path, target: Target,
                  server_target: Target, options: dict, data_test, profile, threads: int,
                  reference_logits: np.ndarray | None, stage_records: list[dict] | None = None
                  ) -> tuple[list[Artifact], dict]:
    """Head for the device's planned backends, tail for the server; then accuracy + latency of the pair."""
    model: SplitModel = final.module
    spec = final.spec
    head = LoadedModel(model.head_module().eval(), spec, source=final.source, arch=None)
    tail = LoadedModel(model.tail_module().eval(), tail_spec(model, spec), source=final.source, arch=None)
    heads = []
    for backend_name, precision in plan:
        ui.info(f"[bold]compile[/bold] split head {backend_name} {precision}")
        heads.append(_compile_into(backend_name, head, precision, bundle_root, "head", target, options))
    ui.info(f"[bold]compile[/bold] split tail {TAIL_BACKEND} fp32 (server target {server_target.name})")
    tail_artifact = _compile_into(TAIL_BACKEND, tail, "fp32", bundle_root, "tail", server_target, options)
    from edgekit.profiling.estimate import attach_estimates

    attach_estimates(heads, head, target)   # the head's own cost on a device we cannot reach (labelled)
    quant = model.quant.settings()

    tail_session = BACKENDS.get(TAIL_BACKEND)().load(tail_artifact, bundle_root, threads)
    sample = next(prepared_batches(data_test, spec, profile.batch))[0].numpy()
    try:
        for artifact in heads:
            if not artifact.runnable_here:
                continue
            ui.info(f"[bold]profile[/bold] split pair {artifact.name} + {tail_artifact.name}")
            head_session = BACKENDS.get(artifact.backend)().load(artifact, bundle_root, threads)
            try:
                logits, labels = pair_logits(head_session, tail_session, quant, spec, data_test, profile.eval_batch)
                pair = {**accuracy_counts(logits, labels), "samples": int(len(labels))}
                metrics = {"split_accuracy": pair, "accuracy": pair,  # of head + 8-bit transfer + tail
                           "latency": {**measure_latency(head_session.run, sample, profile.warmup, profile.runs,
                                                         profile.max_seconds), "threads": threads,
                                       "measured": "host"},
                           "session": head_session.info}
                if reference_logits is not None:
                    metrics["agreement"] = agreement(logits, reference_logits)
                artifact.metrics = metrics
            finally:
                head_session.close()
        z = dequantize(quantize(np.zeros((profile.batch, *model.cfg.bottleneck_shape), np.float32) + 0.1,
                                quant["scale"], quant["zero_point"]), quant["scale"], quant["zero_point"])
        tail_artifact.metrics = {"latency": {**measure_latency(tail_session.run, z, profile.warmup, profile.runs,
                                                               profile.max_seconds), "threads": threads,
                                             "measured": "host"}, "session": tail_session.info}
    finally:
        tail_session.close()
    section = {
        "split_at": model.cfg.split_at,
        "bottleneck": {"shape": list(model.cfg.bottleneck_shape), "bytes_per_image": int(np.prod(model.cfg.bottleneck_shape)),
                       "quantization": quant},
        "feature_shape": list(model.cfg.feature_shape),
        "head": {"artifacts": [a.name for a in heads], "input": "model input (spec preprocessing)",
                 "output": "float32 bottleneck, quantized to uint8 for transfer"},
        "tail": {"artifact": tail_artifact.name, "server_target": server_target.name,
                 "input": "dequantized float32 bottleneck", "output": "logits"},
        "spec": spec.model_dump(mode="json"),
        "stage": next((r["metrics"] for r in reversed(stage_records or []) if r["name"] == "bottleneck"), {}),
    }
    head_metrics = next((a.metrics for a in heads if a.metrics), {})
    section["accuracy"] = {"split_pair_top1": head_metrics.get("split_accuracy", {}).get("top1"),
                           "teacher_val_top1": section["stage"].get("val_top1_teacher"),
                           "split_val_top1": section["stage"].get("val_top1_split")}
    return heads + [tail_artifact], section


def pair_logits(head_session, tail_session, quant: dict, spec: ModelSpec, ds, batch_size: int = 64,
                limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits of head -> uint8 -> tail, in process, through the runtimes."""
    outs, labels = [], []
    for x, y in prepared_batches(ds, spec, batch_size, limit):
        q = quantize(head_session.run(x.numpy()), quant["scale"], quant["zero_point"])
        outs.append(tail_session.run(dequantize(q, quant["scale"], quant["zero_point"])))
        labels.append(y.numpy())
    return np.concatenate(outs), np.concatenate(labels)
