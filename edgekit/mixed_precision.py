"""Automatic mixed precision (``precision: auto``): an INT8 file that disagrees with the FP32 model too often
gets a sibling with the layers most sensitive to INT8 kept in float.

Per backend, on the unit's validation images (model-ready, up to ``AGREEMENT_IMAGES``):

1. the plain INT8 file's top-1 agreement with the final PyTorch model; at or above ``min_agreement`` nothing
   else happens (the check is in the INT8 file's ``meta.agreement_check``);
2. below it, its layers are ranked by per-layer SQNR against the backend's own FP32 file, both run through
   the backend's runtime (``edgekit.quant_debug.compare_files``: the one per-layer measurement edgekit has);
3. the backend builds ``Precision.MIXED`` files keeping the 1, 2, 4, ... worst layers in float (the user's
   torch module paths in ``CompileRequest.float_layers``; each backend maps them to its own exclusion list:
   ONNX Runtime ``nodes_to_exclude``, NNCF ``IgnoredScope``, LiteRT unannotated PT2E nodes) until the
   agreement reaches the bound or ``max_float_layers`` is reached. The last file built stays, named
   ``<backend>-mixed``, with ``meta.mixed``: the layers kept, the agreement before and after, every try.

Why agreement and why ``100 - bound`` by default: a file agreeing with the FP32 model on a fraction ``a`` of
the images cannot be more than ``100 - a`` points less accurate, so the default makes the mixed file meet
precision selection's bound by construction on those images; the selection still judges it on the test split.

The file is timed and scored like any other, and ``attach_mixed_costs`` adds what the float layers cost:
its p50 against the plain INT8 and the FP32 files of its backend. Precision selection only chooses it when it
is faster than that FP32 file (``edgekit.decisions``): otherwise keeping float layers bought nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from edgekit import ui
from edgekit.backends import BACKENDS, Artifact, CompileRequest
from edgekit.data.core import prepared_batches
from edgekit.models.loaded import LoadedModel
from edgekit.profiling.artifacts import agreement
from edgekit.vocab import Precision, Runtime

AGREEMENT_IMAGES = 1000   # validation images the agreement is measured on (the accuracy-control cap)
RANK_IMAGES = 32          # images the per-layer SQNR ranking runs on: a ranking, not a score
PREDICT_BATCH = 64


def min_agreement_for(asked: float | None, bound: float) -> float:
    """The agreement (%) an INT8 file must reach: the recipe's ``compile.min_agreement``, else 100 - bound."""
    return float(asked) if asked is not None else max(0.0, 100.0 - bound)


def validation_images(model: LoadedModel, val, limit: int = AGREEMENT_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """(model-ready validation images, the final PyTorch model's logits on them)."""
    xs, outs = [], []
    module = model.module.eval()
    with torch.no_grad():
        for x, _ in prepared_batches(val, model.spec, 256, limit):
            xs.append(x.numpy())
            outs.append(module(x).float().numpy())
    return np.concatenate(xs), np.concatenate(outs)


def file_agreement(artifact: Artifact, out_dir: Path, images: np.ndarray, reference: np.ndarray,
                   threads: int) -> float:
    """Top-1 agreement (%) of ``artifact`` (through its runtime) with ``reference`` logits on ``images``."""
    session = BACKENDS.get(artifact.backend)().load(artifact, out_dir, threads)
    try:
        logits = np.concatenate([session.run(images[i:i + PREDICT_BATCH])
                                 for i in range(0, len(images), PREDICT_BATCH)])
    finally:
        session.close()
    return round(agreement(logits, reference)["top1_agreement"], 2)


def ranked_layers(fp32: Artifact, int8: Artifact, out_dir: Path, images: np.ndarray, threads: int
                  ) -> tuple[list[str], dict]:
    """The INT8 file's layers (torch module paths), most sensitive first: lowest per-layer SQNR against the FP32
    file of the same backend (``edgekit.quant_debug``), and what the ranking was measured on. Ops outside any
    module (path ``""``) cannot be named to a backend and are left out."""
    from edgekit.quant_debug import compare_files

    options = {"layout": int8.layout} if int8.runtime == Runtime.LITERT else {}
    report = compare_files(int8.runtime, out_dir / fp32.path, out_dir / int8.path, images[:RANK_IMAGES],
                           threads=threads, **options)
    worst = report.worst(len(report.layers))
    ranked = list(dict.fromkeys(layer.layer for layer in worst if layer.layer))
    first = report.divergence.layer if report.divergence is not None else None
    return ranked, {"measure": "per-layer SQNR vs the FP32 file (edgekit.quant_debug)", "images": report.images,
                    "first_divergence": first,
                    "sqnr_db": {layer.layer: round(layer.sqnr_db, 2) for layer in worst[:8] if layer.layer}}


def sizes(cap: int, available: int) -> list[int]:
    """How many layers each try keeps in float: 1, 2, 4, ... up to min(cap, available), the last included."""
    top = min(cap, available)
    out, k = [], 1
    while k < top:
        out.append(k)
        k *= 2
    return out + [top] if top > 0 else []


def search_mixed(model: LoadedModel, fp32: Artifact, int8: Artifact, request: CompileRequest, out_dir: Path,
                 images: np.ndarray, reference: np.ndarray, min_agreement: float, max_layers: int,
                 threads: int) -> Artifact | None:
    """The ``<backend>-mixed`` file for ``int8`` when its agreement is under ``min_agreement`` (None when it is
    not, or when no layer can be kept in float). Marks ``int8.meta.agreement_check`` either way."""
    before = file_agreement(int8, out_dir, images, reference, threads)
    int8.meta["agreement_check"] = {"top1_agreement": before, "min_agreement": min_agreement,
                                    "images": int(len(images)), "of": "validation split, vs the final PyTorch model"}
    if before >= min_agreement or max_layers <= 0:
        return None
    ui.info(f"[bold]mixed precision[/bold] {int8.name}: agreement {before:.2f}% < {min_agreement:.2f}%, "
            "ranking its layers by SQNR")
    ranked, ranking = ranked_layers(fp32, int8, out_dir, images, threads)
    backend = BACKENDS.get(int8.backend)()
    tries: list[dict] = []
    artifact: Artifact | None = None
    for k in sizes(max_layers, len(ranked)):
        layers = tuple(ranked[:k])
        artifact = backend.compile(model, Precision.MIXED, dataclasses.replace(request, float_layers=layers))
        after = file_agreement(artifact, out_dir, images, reference, threads)
        tries.append({"float_layers": list(layers), "top1_agreement": after})
        ui.info(f"[bold]mixed precision[/bold] {artifact.name}: {k} layer(s) in float -> agreement {after:.2f}%")
        if after >= min_agreement:
            break
    if artifact is None:
        int8.meta["agreement_check"]["mixed"] = {"ranking": ranking, "tries": []}
        return None
    last = tries[-1]
    if last["top1_agreement"] < min_agreement and last["top1_agreement"] <= before:
        # nothing gained: a file slower than INT8 and no more accurate would only cost a timing and a scoring
        for f in artifact.files:
            (out_dir / f).unlink(missing_ok=True)
        int8.meta["agreement_check"]["mixed"] = {"ranking": ranking, "tries": tries}
        ui.warn(f"mixed precision {int8.name}: no set of up to {max_layers} layer(s) kept in float raised the "
                "agreement; no mixed file")
        return None
    artifact.meta["mixed"] = {"float_layers": last["float_layers"], "agreement_int8": before,
                              "agreement": last["top1_agreement"], "min_agreement": min_agreement,
                              "meets_bound": last["top1_agreement"] >= min_agreement, "images": int(len(images)),
                              "int8_artifact": int8.name, "fp32_artifact": fp32.name, "max_float_layers": max_layers,
                              "ranking": ranking, "tries": tries}
    return artifact


def attach_mixed_costs(artifacts: list[Artifact]) -> None:
    """What the float layers cost: each mixed file's p50 next to its backend's plain INT8 and FP32 files'
    (``meta.mixed.latency``), once they are timed."""
    def p50(a: Artifact | None) -> float | None:
        return None if a is None else (a.metrics.get("latency") or {}).get("p50_ms")

    for mixed in (a for a in artifacts if a.precision == Precision.MIXED and "mixed" in a.meta):
        by_name = {a.name: a for a in artifacts}
        own, int8 = p50(mixed), p50(by_name.get(mixed.meta["mixed"]["int8_artifact"]))
        fp32 = p50(by_name.get(mixed.meta["mixed"]["fp32_artifact"]))
        mixed.meta["mixed"]["latency"] = {
            "p50_ms": own, "int8_p50_ms": int8, "fp32_p50_ms": fp32,
            "vs_int8": round(own / int8, 3) if own and int8 else None,
            "vs_fp32": round(own / fp32, 3) if own and fp32 else None}
