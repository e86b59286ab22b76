"""Automatic mixed precision (``precision: auto``): an INT8 file that misses the accuracy bound gets a sibling
with the layers most sensitive to INT8 kept in float.

Per backend, on the unit's validation images (model-ready, up to ``AGREEMENT_IMAGES``, labelled):

1. the plain INT8 file's top-1 drop against the final PyTorch model (the measure precision selection bounds
   with ``compile.max_accuracy_drop``) and its top-1 agreement with it (bounded by ``compile.min_agreement``
   when the recipe sets one); within both, nothing else happens (``meta.agreement_check`` of the INT8 file);
2. otherwise its layers are ranked by per-layer SQNR against the backend's own FP32 file, both run through
   the backend's runtime (``edgekit.quant_debug.compare_files``: the one per-layer measurement edgekit has);
3. the backend builds ``Precision.MIXED`` files keeping the 1, 2, 4, ... worst layers in float (the user's
   torch module paths in ``CompileRequest.float_layers``; each backend maps them to its own exclusion list:
   ONNX Runtime ``nodes_to_exclude``, NNCF ``IgnoredScope``, LiteRT unannotated PT2E nodes) until the file
   is within the bound or ``max_float_layers`` is reached. The last file built stays, named
   ``<backend>-mixed``, with ``meta.mixed``: the layers kept, the agreement and drop before and after, every try.

Why the drop by default and not agreement alone: an INT8 file within the drop bound is chosen over any mixed
file (it is faster), so a mixed file is only worth building for one that misses it; ``min_agreement`` adds the
stricter "same answer as FP32" bar (the issue's 95% on real photos) for users who ask for it.

The file is timed and scored like any other, and ``attach_mixed_costs`` adds what the float layers cost:
its p50 against the plain INT8 and the FP32 files of its backend. Precision selection only chooses it when it
is faster than that FP32 file (``edgekit.decisions``): otherwise keeping float layers bought nothing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Bound:
    """What a file must meet on the validation images: top-1 drop against the final model at most ``max_drop``
    points and, when set, top-1 agreement with it at least ``min_agreement`` percent."""

    max_drop: float
    min_agreement: float | None = None

    def met(self, check: dict) -> bool:
        return check["drop"] <= self.max_drop and (self.min_agreement is None
                                                   or check["top1_agreement"] >= self.min_agreement)

    def clearly_missed(self, check: dict, images: int) -> bool:
        """Missed by more than the drop's own noise: a drop over the bound by less than one paired standard error
        (100·√disagreements / n points, e.g. 0.6 pt for 3 of 269 images) is as likely a draw of the images as a
        quantization error, and a search on it costs a rebuild per try for nothing. An explicit agreement floor
        is taken as asked."""
        if self.min_agreement is not None and check["top1_agreement"] < self.min_agreement:
            return True
        disagreements = max(1.0, (100.0 - check["top1_agreement"]) * images / 100.0)
        return check["drop"] > self.max_drop + 100.0 * math.sqrt(disagreements) / max(images, 1)

    def describe(self) -> dict:
        return {"max_drop": self.max_drop, "min_agreement": self.min_agreement}


@dataclass(frozen=True)
class Validation:
    """Model-ready validation images, their labels and the final PyTorch model's logits on them."""

    images: np.ndarray
    labels: np.ndarray
    reference: np.ndarray

    @property
    def reference_top1(self) -> float:
        return float((self.reference.argmax(1) == self.labels).mean() * 100)


def validation_set(model: LoadedModel, val, limit: int = AGREEMENT_IMAGES) -> Validation:
    """The final model's ``Validation`` on the first ``limit`` images of ``val``."""
    xs, ys, outs = [], [], []
    module = model.module.eval()
    with torch.no_grad():
        for x, y in prepared_batches(val, model.spec, 256, limit):
            xs.append(x.numpy())
            ys.append(y.numpy())
            outs.append(module(x).float().numpy())
    return Validation(np.concatenate(xs), np.concatenate(ys), np.concatenate(outs))


def file_check(artifact: Artifact, out_dir: Path, val: Validation, threads: int) -> dict:
    """Top-1 agreement (%) of ``artifact`` (through its runtime) with the final model, its top-1 and its drop."""
    with BACKENDS.get(artifact.backend)().load(artifact, out_dir, threads) as session:
        logits = session.predict(val.images)
    top1 = float((logits.argmax(1) == val.labels).mean() * 100)
    return {"top1_agreement": round(agreement(logits, val.reference)["top1_agreement"], 2),
            "top1": round(top1, 2), "drop": round(val.reference_top1 - top1, 2)}


def ranked_layers(fp32: Artifact, int8: Artifact, out_dir: Path, images: np.ndarray, threads: int,
                  module: torch.nn.Module | None = None) -> tuple[list[str], dict]:
    """The INT8 file's layers (torch module paths of ``module``), most sensitive first: lowest per-layer SQNR
    against the FP32 file of the same backend (``edgekit.quant_debug``), and what the ranking was measured on.
    Ops outside any module (path ``""``) cannot be named to a backend and are left out."""
    from edgekit.models.layer_names import litert_paths, within
    from edgekit.quant_debug import compare_files

    options = {"layout": int8.layout} if int8.runtime == Runtime.LITERT else {}
    report = compare_files(int8.runtime, out_dir / fp32.path, out_dir / int8.path, images[:RANK_IMAGES],
                           threads=threads, **options)
    if int8.runtime == Runtime.LITERT and module is not None:   # LiteRT drops uncalled containers from its names
        report = report.renamed(litert_paths(module.eval(), torch.from_numpy(images[:1])))
    worst = report.worst(len(report.layers))
    measured = {layer.layer for layer in report.layers}
    # A module holding every measured layer (the root, or a wrapper such as a .pt2 program's, whose ops a backend
    # could not name any deeper) is the whole model: keeping it in float is the FP32 file, not mixed precision.
    ranked = [name for name in dict.fromkeys(layer.layer for layer in worst if layer.layer)
              if not all(within(other, name) for other in measured)]
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
                 val: Validation, bound: Bound, max_layers: int, threads: int) -> Artifact | None:
    """The ``<backend>-mixed`` file for ``int8`` when it misses ``bound`` on ``val`` (None when it does not, or
    when no layer kept in float gains anything). Marks ``int8.meta.agreement_check`` either way."""
    before = file_check(int8, out_dir, val, threads)
    int8.meta["agreement_check"] = {**before, **bound.describe(), "images": int(len(val.labels)),
                                    "of": "validation split, vs the final PyTorch model"}
    if not bound.clearly_missed(before, len(val.labels)) or max_layers <= 0:
        return None
    ui.info(f"[bold]mixed precision[/bold] {int8.name}: agreement {before['top1_agreement']:.2f}%, drop "
            f"{before['drop']:+.2f} pt on validation: out of bounds, ranking its layers by SQNR")
    ranked, ranking = ranked_layers(fp32, int8, out_dir, val.images, threads, model.module)
    if not ranked:
        int8.meta["agreement_check"]["mixed"] = {"ranking": ranking, "tries": []}
        ui.warn(f"mixed precision {int8.name}: its ops carry no module names below the whole model, so no layer "
                "can be kept in float on its own; no mixed file")
        return None
    backend = BACKENDS.get(int8.backend)()
    tries: list[dict] = []
    artifact: Artifact | None = None
    for k in sizes(max_layers, len(ranked)):
        layers = tuple(ranked[:k])
        artifact = backend.compile(model, Precision.MIXED, dataclasses.replace(request, float_layers=layers))
        after = file_check(artifact, out_dir, val, threads)
        tries.append({"float_layers": list(layers), **after})
        ui.info(f"[bold]mixed precision[/bold] {artifact.name}: {k} layer(s) in float -> agreement "
                f"{after['top1_agreement']:.2f}%, drop {after['drop']:+.2f} pt")
        if bound.met(after):
            break
    last = tries[-1] if tries else None
    if artifact is None or (not bound.met(last) and last["top1_agreement"] <= before["top1_agreement"]):
        # nothing gained: a file slower than INT8 and no more accurate would only cost a timing and a scoring
        for f in artifact.files if artifact is not None else []:
            (out_dir / f).unlink(missing_ok=True)
        int8.meta["agreement_check"]["mixed"] = {"ranking": ranking, "tries": tries}
        ui.warn(f"mixed precision {int8.name}: no set of up to {max_layers} layer(s) kept in float gained "
                "agreement; no mixed file")
        return None
    artifact.meta["mixed"] = {"float_layers": last["float_layers"], "int8": before,
                              "agreement_int8": before["top1_agreement"], "agreement": last["top1_agreement"],
                              "drop_int8": before["drop"], "drop": last["drop"], "bound": bound.describe(),
                              "meets_bound": bound.met(last), "images": int(len(val.labels)),
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
