"""OpenVINO IR (``ov.convert_model`` -> .xml/.bin) run on OpenVINO's CPU plugin.

Two traps handled here (seen on this class of CPU): the CPU plugin silently runs an "FP32" model in
bf16 when the CPU supports it, and ``ov.save_model`` compresses weights to FP16 by default. An
artifact called fp32 therefore saves with ``compress_to_fp16=False`` and runs with
``INFERENCE_PRECISION_HINT=f32``; the precision the plugin reports is what the manifest records.
INT8 is NNCF post-training quantization of the IR (``openvino_quant.py``); its remaining float ops
run in f32 so the INT8 accuracy is the quantizer's, not bf16's.
"""

from __future__ import annotations

import warnings

import torch

from edgekit.backends.base import Artifact, Backend, CompileRequest, describe_files, register_backend
from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.runtime import OpenVinoSession

# Artifact precision -> (weights stored as FP16?, CPU inference precision hint)
PRECISION_SETTINGS = {"fp32": (False, "f32"), "fp16": (True, "f16"), "int8": (True, "f32")}  # int8: FQ constants in fp16


@register_backend("openvino")
class OpenVino(Backend):
    runtime_module = "openvino"
    package = "openvino"
    extra = "openvino"
    precisions = ("fp32", "fp16", "int8")

    def compile(self, model: LoadedModel, precision: str, request: CompileRequest) -> Artifact:
        ov = self.runtime()
        if precision not in PRECISION_SETTINGS:
            raise EdgekitError(f"openvino backend cannot compile {precision} yet",
                               f"use one of: {', '.join(PRECISION_SETTINGS)}")
        compress, hint = PRECISION_SETTINGS[precision]
        c, h, w = model.spec.input_shape
        ov_model, conversion = _convert(ov, model, request.out_dir)
        quant_meta = {}
        if precision == "int8":
            from edgekit.backends.openvino_quant import nncf_int8

            ov_options = request.options.get("openvino", {})
            ov_model, quant_meta = nncf_int8(ov_model, request.calibration, request.validation,
                                             request.max_accuracy_drop, ov_options.get("preset", "performance"))
        xml = request.artifacts_dir / "openvino" / f"model_{precision}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, str(xml), compress_to_fp16=compress)
        files, size, sha = describe_files(request.out_dir, [xml, xml.with_suffix(".bin")])
        session = OpenVinoSession(xml, 1, hint)
        meta = {"conversion": conversion, "inference_precision_hint": hint, "weights_fp16": compress,
                "executed_precision": session.info["executed_precision"], "device": "CPU", **quant_meta}
        if precision == "int8":
            meta["executed_precision"] = f"int8 + {meta['executed_precision']}"
        return Artifact(name=f"openvino-{precision}", backend=self.name, precision=precision, path=files[0],
                        files=files, runtime="openvino", runtime_version=ov.__version__,
                        input_shape=[c, h, w], meta=meta, bytes=size, sha256=sha)


def _convert(ov, model: LoadedModel, out_dir) -> tuple[object, str]:
    """``ov.convert_model`` on the module (TorchScript tracing); where tracing fails (torchvision's
    ViT: "Couldn't get TorchScript module by tracing"), through the ONNX file of the shared exporter."""
    import tempfile
    from pathlib import Path

    c, h, w = model.spec.input_shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convert_model traces with torch.jit, which warns
            return ov.convert_model(model.module.eval(), example_input=torch.zeros(1, c, h, w),
                                    input=[(-1, c, h, w)]), "ov.convert_model (PyTorch, traced)"
    except Exception as err:  # noqa: BLE001 - try the ONNX route before giving up
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    from edgekit.models.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(dir=out_dir if Path(out_dir).exists() else None) as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            export_onnx(model.module, model.spec, path)
            ov_model = ov.convert_model(str(path))
        except Exception as err:  # noqa: BLE001
            raise EdgekitError(f"OpenVINO conversion failed for {model.source}: PyTorch tracing ({first}) and the "
                               f"ONNX route ({str(err).strip().splitlines()[0][:160]})",
                               "use the onnxruntime backend for this model") from None
        ov_model.reshape({ov_model.inputs[0]: ov.PartialShape([-1, c, h, w])})
        return ov_model, f"via ONNX (PyTorch tracing failed: {first[:120]})"
