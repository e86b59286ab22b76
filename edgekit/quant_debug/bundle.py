"""``edgekit debug``: a bundle's INT8 artifact against its FP32 sibling (same runtime, same model), layer by
layer, on the bundle's own calibration images; the result is written to ``<bundle>/debug/<artifact>.json`` and
``.png`` and nothing else in the bundle changes. Compress calls ``debug_over_bound`` for the INT8 artifacts whose
drop is over the precision bound, and puts their summary in the manifest and the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.bundle import verified_file, verify_artifact
from edgekit.errors import EdgekitError
from edgekit.manifest import ArtifactRecord, DebugLayer, Int8Debug, Manifest
from edgekit.quant_debug.compare import compare_files
from edgekit.quant_debug.records import LayerError, LayerReport
from edgekit.vocab import Part, Precision, Runtime

SUPPORTED = (Runtime.ONNXRUNTIME, Runtime.OPENVINO, Runtime.LITERT)
DEBUG_DIR = "debug"
REPORT_IMAGES = 8        # compress's section: a few images keep its cost to seconds
WORST = 10


@dataclass(frozen=True)
class DebugReport:
    """One INT8 artifact's per-layer comparison (``layers``), the FP32 artifact it was compared with, and the
    files written into the bundle (relative paths)."""

    bundle: Path
    artifact: str
    reference: str
    layers: LayerReport
    json_path: str
    plot: str | None

    def worst(self, n: int = WORST) -> list[LayerError]:
        return self.layers.worst(n)

    def record(self, n: int = WORST) -> Int8Debug:
        """The manifest's summary: the first divergence and the ``n`` worst layers."""
        d = self.layers.divergence
        first = self.layers.layers[d.index] if d is not None else None
        where = {id(l): i for i, l in enumerate(self.layers.layers)}
        return Int8Debug(artifact=self.artifact, reference=self.reference, runtime=self.layers.runtime,
                         images=self.layers.images, layers=len(self.layers.layers),
                         divergence=_layer(first, d.index) if first else None, divergence_rule=str(d.rule) if d else None,
                         divergence_before_db=d.before_db if d else None,
                         worst=[_layer(l, where[id(l)]) for l in self.worst(n)], json_path=self.json_path, plot=self.plot)

    def to_dict(self) -> dict:
        return {"artifact": self.artifact, "reference": self.reference, "json": self.json_path, "plot": self.plot,
                **self.layers.to_dict()}


def _layer(l: LayerError, index: int) -> DebugLayer:
    finite = [v if v == v else None for v in (l.sqnr_db, l.cosine)]
    return DebugLayer(index=index, layer=l.label, op=l.op, sqnr_db=finite[0], cosine=finite[1])


def pick_artifact(manifest: Manifest, name: str | None) -> ArtifactRecord:
    """The named artifact, else the deployed one when it is INT8, else the first INT8 one this host can run."""
    if name is not None:
        record = manifest.artifact(name)
        if record.precision != Precision.INT8:
            raise EdgekitError(f"artifact {name} is {record.precision}, not int8: there is no quantization to debug",
                               f"int8 artifacts: {', '.join(_int8_names(manifest)) or 'none'}")
        return record
    deployed = manifest.deploy.artifact if manifest.deploy else None
    candidates = [a for a in manifest.artifacts if a.name in _int8_names(manifest)]
    if not candidates:
        raise EdgekitError(f"the bundle has no INT8 artifact to debug ({manifest.bundle or 'bundle'})",
                           "compress with an int8 precision (e.g. --recipe int8)")
    return next((a for a in candidates if a.name == deployed), candidates[0])


def _int8_names(manifest: Manifest) -> list[str]:
    return [a.name for a in manifest.artifacts if a.precision == Precision.INT8 and a.part == Part.WHOLE
            and a.runnable_here and a.runtime in SUPPORTED]


def fp32_sibling(manifest: Manifest, record: ArtifactRecord) -> ArtifactRecord:
    """The FP32 artifact of the same runtime and part (the same model before quantization)."""
    for a in manifest.artifacts:
        if a.precision == Precision.FP32 and a.runtime == record.runtime and a.part == record.part:
            return a
    raise EdgekitError(f"the bundle has no FP32 {record.runtime} artifact to compare {record.name} with",
                       "compress with precisions [fp32, int8] (the int8 recipe does)")


def debug_artifact(bundle: Path, manifest: Manifest, artifact: str | None = None, images: int = 32,
                   threads: int = 1) -> DebugReport:
    """Compare the INT8 artifact with its FP32 sibling on ``images`` calibration images and write
    ``debug/<artifact>.json`` and ``.png`` into ``bundle``."""
    if images < 1:
        raise EdgekitError(f"images={images} must be 1 or more")
    record = pick_artifact(manifest, artifact)
    if record.part != Part.WHOLE or record.runtime not in SUPPORTED or not record.runnable_here:
        raise EdgekitError(f"per-layer debugging covers whole-model ONNX Runtime, OpenVINO and LiteRT artifacts "
                           f"run here; {record.name} is a {record.part} {record.runtime} artifact")
    reference = fp32_sibling(manifest, record)
    int8_path, fp32_path = verify_artifact(bundle, record)[0], verify_artifact(bundle, reference)[0]
    inputs = _images(bundle, manifest, images)
    options = {"precision_hint": record.meta.get("inference_precision_hint", "f32"),
               "layout": record.layout or "NCHW"}
    try:
        layers = compare_files(record.runtime, fp32_path, int8_path, inputs, threads=threads, **options)
    except ImportError as err:
        raise EdgekitError(f"runtime for {record.name} is not installed ({err.name})",
                           f"install {err.name}") from None
    out = bundle / DEBUG_DIR
    out.mkdir(parents=True, exist_ok=True)
    json_rel, png_rel = f"{DEBUG_DIR}/{record.name}.json", f"{DEBUG_DIR}/{record.name}.png"
    plot = None
    try:
        from edgekit.quant_debug.plot import plot_sqnr

        plot_sqnr(layers, bundle / png_rel, f"{record.name} vs {reference.name}: SQNR per layer "
                                             f"({layers.images} images)")
        plot = png_rel
    except ImportError:   # matplotlib is optional: the JSON and the table carry everything
        pass
    report = DebugReport(bundle, record.name, reference.name, layers, json_rel, plot)
    (bundle / json_rel).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _images(bundle: Path, manifest: Manifest, n: int) -> np.ndarray:
    from edgekit.calibration import load_calibration

    cal = manifest.calibration
    if cal is None:
        raise EdgekitError("the bundle has no calibration images to run the layers on",
                           "rebuild it with edgekit compress and an int8 precision")
    path = verified_file(bundle, cal.path, cal.sha256, "calibration set")
    return np.asarray(load_calibration(path).inputs[:n], dtype=np.float32)


def debug_over_bound(manifest: Manifest, bundle: Path, threads: int = 1, images: int = REPORT_IMAGES) -> None:
    """Compress's hook, after the decisions: every INT8 artifact whose top-1 drop against the final FP32 model is
    over the precision bound (``compile.max_accuracy_drop``, default ``DEFAULT_AUTO_DROP``: the bound precision
    selection applies) gets debugged on a few images, its summary in ``manifest.int8_debug``. A failure to
    debug is recorded, never fatal: the bundle is what the run was for."""
    from edgekit.decisions import DEFAULT_AUTO_DROP

    bound = manifest.recipe.compile.max_accuracy_drop
    bound = DEFAULT_AUTO_DROP if bound is None else bound
    found = []
    for record in manifest.artifacts:
        drop = record.drops.vs_final
        if record.name not in _int8_names(manifest) or drop is None or drop <= bound:
            continue
        try:
            found.append(debug_artifact(bundle, manifest, record.name, images, threads).record())
        except EdgekitError as err:
            found.append(Int8Debug(artifact=record.name, reference="", runtime=str(record.runtime), images=0,
                                   layers=0, error=str(err)))
    manifest.int8_debug = found or None
