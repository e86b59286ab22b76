"""TFLite / LiteRT: PyTorch -> ``.tflite`` with ``litert-torch`` (no TensorFlow), run with
``ai_edge_litert``'s Interpreter (XNNPACK) here and ``tflite_runtime`` on a Raspberry Pi.

- FP32: ``litert_torch.convert``. The graph takes NHWC input (``to_channel_last_io``), the layout
  TFLite kernels and camera pipelines use; ``Session.run`` still takes NCHW and transposes.
- FP16: ai-edge-quantizer's float-casting recipe on the FP32 file (fp16 weights, fp32 compute on CPU).
- INT8: full-integer static quantization through litert-torch's PT2E quantizer (per-channel
  symmetric weights, int8 activations) calibrated on our calibration set. Traps handled
  (``tflite_prep.py``): a ReLU module used twice (torchvision BasicBlock) leaves residual adds in
  float, so each use gets its own module first; ``tflite_quantizer.py``: ops on integer tensors stay
  unquantized, and activation scales are not floored at litert-torch's 2^-12. Known and measured,
  not hidden: PT2E leaves Hardsigmoid in float and XNNPACK does not take int8 HARD_SWISH, so
  MobileNetV3 INT8 can be slower than FP32 - ``precision: auto`` measures and picks.
- I/O: float32 unless the file has int8/uint8 tensors, which the runtime layer's LiteRT session
  (``edgekit.runtime``) (de)quantizes with the tensors' own scale and zero point.
"""

from __future__ import annotations

import copy
import re
import tempfile
import warnings
from pathlib import Path

import torch

from edgekit.backends.base import Artifact, Backend, CompileRequest, describe_files, register_backend
from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.runtime.litert_session import litert_version
from edgekit.vocab import Precision, Runtime


@register_backend("tflite")
class Tflite(Backend):
    runtime_module = "litert_torch"
    package = "litert-torch"
    extra = "tflite"
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8)
    mixed = True

    def compile(self, model: LoadedModel, precision: Precision, request: CompileRequest) -> Artifact:
        litert_torch = self.runtime("the tflite (LiteRT) backend")
        if precision not in self.precisions and precision != Precision.MIXED:
            raise EdgekitError(f"tflite backend cannot compile {precision}", "use fp32, fp16 or int8")
        from edgekit.backends.tflite_prep import prepare_for_pt2e

        c, h, w = model.spec.input_shape
        # the NHWC wrapper is a new module in training mode: without .eval() litert-torch converts
        # training-mode BatchNorm/Dropout ("Your model is converted in training mode")
        module = litert_torch.to_channel_last_io(copy.deepcopy(model.module).eval(), args=[0]).eval()
        sample = (torch.zeros(1, h, w, c),)
        path = request.artifacts_dir / f"model_{precision}.tflite"
        path.parent.mkdir(parents=True, exist_ok=True)
        meta: dict = {"converter": f"litert-torch {litert_torch.__version__}", "layout": "NHWC"}
        target = request.target.name
        with warnings.catch_warnings(), _quiet_converter():
            warnings.simplefilter("ignore")
            if precision in (Precision.INT8, Precision.MIXED):
                meta.update(self._int8(litert_torch, module, sample, request, path, prepare_for_pt2e, target,
                                       request.float_layers if precision == Precision.MIXED else ()))
            else:
                module, fixes = _float_rewrites(module, sample)
                if fixes:
                    meta["graph_fixes"] = fixes
                edge = _convert(litert_torch, module, sample, target)
                if precision == Precision.FP32:
                    edge.export(str(path))
                else:
                    with tempfile.TemporaryDirectory() as tmp:
                        fp32 = Path(tmp) / "fp32.tflite"
                        edge.export(str(fp32))
                        meta.update(_fp16(fp32, path))
        files, size, sha = describe_files(request.out_dir, [path])
        meta["executed_precision"] = {"fp32": "fp32", "fp16": "fp16 weights, fp32 compute (XNNPACK CPU)",
                                      "int8": "int8", "mixed": "int8, some layers fp32"}[precision]
        meta.update(tflite_op_summary(path))
        return Artifact(name=f"tflite-{precision}", backend=self.name, precision=precision, path=files[0],
                        files=files, runtime=Runtime.LITERT, runtime_version=litert_version(), input_shape=[c, h, w],
                        layout="NHWC", meta=meta, bytes=size, sha256=sha)

    def _int8(self, litert_torch, module, sample, request: CompileRequest, path: Path, prepare, target: str,
              float_layers: tuple[str, ...] = ()) -> dict:
        if request.calibration is None or len(request.calibration) == 0:
            raise EdgekitError("TFLite INT8 needs a calibration set and none was given",
                               "compile through `edgekit compress` (it draws one from the training split)")
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        from edgekit.backends.tflite_prep import converter_rewrites
        from edgekit.backends.tflite_quantizer import FloatOnlyPT2EQuantizer, below_litert_floor, int8_config

        module, fixes = prepare(module, sample)
        quantizer = FloatOnlyPT2EQuantizer(float_layers).set_global(int8_config())
        try:
            exported = torch.export.export(module, sample).module()
            fixes += converter_rewrites(exported, float_graph=False)
            prepared = move_exported_model_to_eval(prepare_pt2e(exported, quantizer))
            if quantizer.unquantized_integer_ops:
                fixes.append(f"{len(quantizer.unquantized_integer_ops)} op(s) on integer tensors (index "
                             f"arithmetic, e.g. {quantizer.unquantized_integer_ops[0]}) left unquantized")
            if quantizer.l2_normalizations:
                fixes.append(f"{len(quantizer.l2_normalizations)} L2 normalization(s) left in float (LiteRT's int8 "
                             "L2_NORMALIZATION takes only output scale 1/128)")
            if quantizer.fused_clamps:
                fixes.append(f"{len(quantizer.fused_clamps)} clamp(s) after a convolution or linear layer (ReLU6) "
                             "quantized on their own range, fused into the layer")
            if quantizer.computed_kernels:
                fixes.append(f"{len(quantizer.computed_kernels)} op(s) around convolutions whose kernel is computed "
                             "from the input (per-sample weights) left in float")
            if quantizer.float_softmaxes:
                fixes.append(f"{len(quantizer.float_softmaxes)} softmax(es) left in float (LiteRT's int8 SOFTMAX "
                             "takes only output scale 1/256)")
            with torch.no_grad():
                for i in range(len(request.calibration)):  # exported with batch 1
                    prepared(torch.from_numpy(request.calibration[i:i + 1]).permute(0, 2, 3, 1).contiguous())
            fine, observed = below_litert_floor(prepared)
            # exported graph modules report training mode; the converter would warn and keep it
            converted = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
        except Exception as err:  # noqa: BLE001
            raise _op_error(err, target, "PT2E quantization") from None
        edge = _convert(litert_torch, converted, sample, target, QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(path))
        return {"quantizer": "litert-torch PT2EQuantizer (torchao prepare_pt2e/convert_pt2e)",
                "weights": "int8 per-channel symmetric", "activations": "int8 per-tensor",
                "activation_scale_floor": "float32 eps (torchao's default), not litert-torch's 2^-12",
                "activations_below_litert_floor": f"{fine} of {observed}",  # range under 255 x 2^-12
                "calibration_images": int(len(request.calibration)), "graph_fixes": fixes,
                **({"float_layers": list(float_layers), "nodes_excluded": quantizer.float_ops} if float_layers else {})}


def _float_rewrites(module, sample):
    from edgekit.backends.tflite_prep import float_rewrites

    try:
        return float_rewrites(module, sample)
    except Exception:  # noqa: BLE001 - the module as is: the converter exports it too, and says what fails
        return module, []


def _convert(litert_torch, module, sample, target: str, quant_config=None):
    try:
        return litert_torch.convert(module, sample, quant_config=quant_config)
    except Exception as err:  # noqa: BLE001 - converter errors are many; name the op when we can
        raise _op_error(err, target, "LiteRT conversion") from None


def _op_error(err: Exception, target: str, what: str) -> EdgekitError:
    text = str(err)
    match = (re.search(r"(aten\.[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)", text)
             or re.search(r"'(tfl\.[A-Za-z0-9_]+|stablehlo\.[A-Za-z0-9_]+)' op", text)
             or re.search(r"[Uu]nsupported (?:op|operator)[: ]+'?([A-Za-z0-9_.:]+)", text))
    first = text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__
    if match:
        return EdgekitError(f"{what} failed for target {target}: operator {match.group(1)} is not supported "
                            f"({first})", "replace that layer, or choose a target with another runtime")
    return EdgekitError(f"{what} failed for target {target}: {type(err).__name__}: {first}")


def _fp16(fp32: Path, out: Path) -> dict:
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    qt = quantizer.Quantizer(str(fp32))
    qt.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                              algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    qt.quantize().export_model(str(out), overwrite=True)
    return {"quantizer": "ai-edge-quantizer float casting", "weights": "fp16"}


def tflite_op_summary(path: Path) -> dict:
    """Operator names in the file and how many tensors are int8: what actually got quantized."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return {}
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(path.read_bytes(), 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    ops = [names.get(max(model.operatorCodes[o.opcodeIndex].builtinCode,
                         model.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode), "?") for o in graph.operators]
    counts: dict[str, int] = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    int8 = sum(1 for t in graph.tensors if t.type == schema.TensorType.INT8)
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    io = {"input": types.get(graph.tensors[graph.inputs[0]].type, "?"),
          "output": types.get(graph.tensors[graph.outputs[0]].type, "?")}
    return {"ops": counts, "int8_tensors": int8, "tensors": len(graph.tensors),
            "io": f"{io['input']} in, {io['output']} out"}


class _quiet_converter:
    """litert-torch prints a progress tree on stdout; keep stdout clean for ``--json``."""

    def __enter__(self):
        import contextlib
        import io
        import sys

        self._buf = io.StringIO()
        self._redirect = contextlib.redirect_stdout(self._buf if not sys.stdout.isatty() else sys.stderr)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc):
        return self._redirect.__exit__(*exc)
