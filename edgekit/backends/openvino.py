"""OpenVINO IR (``ov.convert_model`` -> .xml/.bin) run on OpenVINO's CPU plugin.

Two traps handled here (seen on this class of CPU): the CPU plugin silently runs an "FP32" model in
bf16 when the CPU supports it, and ``ov.save_model`` compresses weights to FP16 by default. An
artifact called fp32 therefore saves with ``compress_to_fp16=False`` and runs with
``INFERENCE_PRECISION_HINT=f32``; the precision the plugin reports is what the manifest records.
INT8 is NNCF post-training quantization of the IR (``openvino_quant.py``); its remaining float ops
run in f32 so the INT8 accuracy is the quantizer's, not bf16's.
"""

from __future__ import annotations

from edgekit.backends.base import Artifact, Backend, CompileRequest, describe_files, register_backend
from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.models.openvino_export import to_openvino
from edgekit.runtime import OpenVinoSession
from edgekit.runtime.signal_stack import kept_signal_stack
from edgekit.spec import ModelSpec
from edgekit.vocab import Precision, Runtime

# Artifact precision -> (weights stored as FP16?, CPU inference precision hint)
PRECISION_SETTINGS = {"fp32": (False, "f32"), "fp16": (True, "f16"), "int8": (True, "f32"),  # int8: FQ constants in fp16
                      "mixed": (True, "f32")}   # int8 with request.float_layers left out of NNCF's scope


@register_backend("openvino")
class OpenVino(Backend):
    runtime_module = "openvino"
    package = "openvino"
    extra = "openvino"
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8)
    mixed = True

    def compile(self, model: LoadedModel, precision: Precision, request: CompileRequest) -> Artifact:
        ov = self.runtime()
        if precision not in PRECISION_SETTINGS:
            raise EdgekitError(f"openvino backend cannot compile {precision} yet",
                               f"use one of: {', '.join(PRECISION_SETTINGS)}")
        compress, hint = PRECISION_SETTINGS[precision]
        c, h, w = model.spec.input_shape
        ov_model, conversion = to_openvino(ov, model.module, model.spec, model.source, request.out_dir)
        ov_model, conversion = batch_that_compiles(ov, ov_model, model.spec, conversion)
        quant_meta = {}
        if precision in (Precision.INT8, Precision.MIXED):
            from edgekit.backends.openvino_quant import nncf_int8

            ov_options = request.options.get("openvino", {})
            mixed = precision == Precision.MIXED
            ov_model, quant_meta = nncf_int8(ov_model, request.calibration, None if mixed else request.validation,
                                             request.max_accuracy_drop, ov_options.get("preset", "performance"),
                                             request.float_layers if mixed else ())
        xml = request.artifacts_dir / "openvino" / f"model_{precision}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, str(xml), compress_to_fp16=compress)
        files, size, sha = describe_files(request.out_dir, [xml, xml.with_suffix(".bin")])
        session = OpenVinoSession(xml, 1, hint)
        meta = {"conversion": conversion, "inference_precision_hint": hint, "weights_fp16": compress,
                "executed_precision": session.info["executed_precision"], "device": "CPU", **quant_meta}
        if precision in (Precision.INT8, Precision.MIXED):
            meta["executed_precision"] = f"int8 + {meta['executed_precision']}"
        return Artifact(name=f"openvino-{precision}", backend=self.name, precision=precision, path=files[0],
                        files=files, runtime=Runtime.OPENVINO, runtime_version=ov.__version__,
                        input_shape=[c, h, w], meta=meta, bytes=size, sha256=sha)


def batch_that_compiles(ov, ov_model, spec: ModelSpec, how: str) -> tuple[object, str]:
    """``ov_model`` with a dynamic batch where the CPU plugin compiles it so, else fixed at one image (a graph that
    folds the batch into a convolution's groups, as CondConv does, converts with a dynamic batch but the plugin
    rejects its convolution: "Unsupported operation of type: Convolution"). Compiling is a fraction of a
    second, and it is where the failure would otherwise surface: inside NNCF or the session. A model that fails at
    one image too fails there, with its own error."""
    try:
        with kept_signal_stack():
            ov.Core().compile_model(ov_model, "CPU")
        return ov_model, how
    except Exception as err:  # noqa: BLE001 - retried with one image; a second failure is the caller's
        if ov_model.inputs[0].get_partial_shape()[0].is_static:
            raise
        reason = str(err).strip().splitlines()[-1][:120] if str(err).strip() else type(err).__name__
    ov_model.reshape({ov_model.inputs[0]: ov.PartialShape([1, *spec.input_shape])})
    return ov_model, f"{how}; batch fixed at 1: a dynamic batch does not compile ({reason})"
