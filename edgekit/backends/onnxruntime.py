"""ONNX Runtime: the universal baseline. FP32, and INT8 as a QDQ graph (``onnx_quant.py``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgekit.backends.base import Artifact, Backend, CompileRequest, describe_files, register_backend
from edgekit.models.onnx_export import export_onnx
from edgekit.backends.onnx_quant import activation_profile, quantize_qdq, reduce_range_choice
from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.runtime import OrtSession  # noqa: F401 - the session (simulate_qdq for the TensorRT proxy)
from edgekit.vocab import Precision, Runtime

__all__ = ["OnnxRuntime", "OrtSession"]


@register_backend("onnxruntime")
class OnnxRuntime(Backend):
    runtime_module = "onnxruntime"
    package = "onnxruntime"
    extra = "onnx"
    precisions = (Precision.FP32, Precision.INT8)
    mixed = True

    def compile(self, model: LoadedModel, precision: Precision, request: CompileRequest) -> Artifact:
        ort = self.runtime()
        if precision not in self.precisions and precision != Precision.MIXED:
            raise EdgekitError(f"onnxruntime backend cannot compile {precision}", "use precision fp32 or int8")
        path = request.artifacts_dir / "model.onnx"
        if precision == Precision.FP32:
            meta = export_onnx(model.module, model.spec, path)
        else:  # the FP32 graph is an intermediate here; only the QDQ file goes in the bundle
            path = request.artifacts_dir / f"model_{precision}.onnx"
            with tempfile.TemporaryDirectory() as tmp:
                fp32 = Path(tmp) / "model.onnx"
                meta = export_onnx(model.module, model.spec, fp32)
                profile = activation_profile(request.target, request.options)
                method = request.options.get("onnxruntime", {}).get("calibration_method", "minmax")
                meta.update(quantize_qdq(fp32, path, request.calibration, profile, method,
                                         reduce_range_choice(profile, request.options),
                                         request.float_layers if precision == Precision.MIXED else ()))
        files, size, sha = describe_files(request.out_dir, [path])
        return Artifact(name=f"onnxruntime-{precision}", backend=self.name, precision=precision, path=files[0],
                        files=files, runtime=Runtime.ONNXRUNTIME, runtime_version=ort.__version__,
                        input_shape=list(model.spec.input_shape), meta={**meta, "executed_precision": precision},
                        bytes=size, sha256=sha)
