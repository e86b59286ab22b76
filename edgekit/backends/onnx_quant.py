"""INT8 ONNX in QDQ format with ONNX Runtime's static quantizer, shared by the ONNX Runtime backend
(what runs here) and the TensorRT backend (explicit INT8 from a symmetric QDQ graph).

Activation type matters for speed, not only accuracy: on an x86 host with AVX-512 VNNI (Zen 4) signed-8-bit
activations (ORT's S8S8 path) were barely faster than FP32 (ResNet-18 18.6 -> 16.7 ms) while unsigned
activations (U8S8, the VNNI path) were 3x faster (-> 6.0 ms). TensorRT only takes symmetric signed
INT8, so its export uses S8 with symmetric activations. The choice and its reason go in the manifest.

x86 without VNNI (AVX2 only, e.g. Zen 3) computes U8S8 products with VPMADDUBSW, whose int16 pair sums
saturate: a ResNet-18-style model lost 3.1 points there with 8-bit weights. ONNX Runtime's answer is
``reduce_range`` (7-bit weights), which we turn on for U8 activations when the compiling x86 CPU has no
VNNI (the x86-cpu target is the host) or when the recipe asks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.target import Target

# profile name -> (activation type, symmetric activations, why)
PROFILES = {
    "ort-u8": ("U8", False, "unsigned activations: ONNX Runtime's fast U8S8 kernels (VNNI on x86, ~3x vs S8S8 here)"),
    "ort-s8": ("S8", False, "signed activations (requested)"),
    "ort-s8-arm": ("S8", False, "signed activations: Arm CPUs run S8S8 natively (SDOT/SMMLA); U8's x86 win does not apply"),
    "tensorrt": ("S8", True, "TensorRT explicit INT8 needs symmetric signed QDQ"),
}


def x86_without_vnni() -> bool:
    """True on an x86 CPU lacking AVX-512 VNNI and AVX-VNNI (read from /proc/cpuinfo; False elsewhere)."""
    import platform

    from edgekit.runtime.identity import host_cpu_flags

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    flags = host_cpu_flags()
    return bool(flags) and "avx512_vnni" not in flags and "avx_vnni" not in flags


def reduce_range_choice(profile: str, options: dict) -> tuple[bool, str]:
    """Whether to quantize weights to 7 bits (``compile.options.onnxruntime.reduce_range``: true, false or
    auto), and why, for the manifest."""
    asked = options.get("onnxruntime", {}).get("reduce_range", "auto")
    if asked is True or asked is False:
        return asked, "requested"
    if str(asked).lower() != "auto":
        raise EdgekitError(f"compile.options.onnxruntime.reduce_range {asked!r} is not true, false or auto")
    if PROFILES[profile][0] == "U8" and x86_without_vnni():
        return True, "x86 CPU without VNNI: U8S8 int16 sums saturate with 8-bit weights, so weights use 7 bits"
    return False, "8-bit weights (VNNI, Arm or signed activations: no U8S8 saturation)"


def activation_profile(target: Target, options: dict, for_tensorrt: bool = False) -> str:
    """Which QDQ flavour to build: TensorRT -> symmetric S8; else the recipe's choice, else U8 on x86
    and S8 on Arm CPUs (Raspberry Pi, Jetson CPU)."""
    if for_tensorrt:
        return "tensorrt"
    asked = options.get("onnxruntime", {}).get("activation_type")
    if asked is None:
        cpu = (target.device.cpu or "").lower()
        return "ort-s8-arm" if any(k in cpu for k in ("cortex", "arm", "neoverse", "carmel")) else "ort-u8"
    asked = str(asked).upper()
    if asked not in ("U8", "S8"):
        raise EdgekitError(f"compile.options.onnxruntime.activation_type {asked!r} is not U8 or S8")
    return "ort-u8" if asked == "U8" else "ort-s8"


class NpzReader:
    """``CalibrationDataReader`` over model-ready arrays (one image per call, as ORT expects)."""

    def __init__(self, inputs: np.ndarray, input_name: str):
        self._inputs, self._name, self._i = inputs, input_name, 0

    def get_next(self):
        if self._i >= len(self._inputs):
            return None
        x = self._inputs[self._i:self._i + 1].astype(np.float32)
        self._i += 1
        return {self._name: x}

    def rewind(self) -> None:
        self._i = 0


def quantize_qdq(fp32_onnx: Path, out: Path, calibration: np.ndarray | None, profile: str,
                 method: str = "minmax", reduce_range: tuple[bool, str] = (False, "8-bit weights"),
                 float_layers: tuple[str, ...] = ()) -> dict:
    """FP32 ONNX -> QDQ INT8 ONNX (per-channel weights; 7-bit with ``reduce_range``); returns what was
    done, for the manifest. ``float_layers`` (torch module paths) stay float: their nodes, and the nodes next to
    them, go to the quantizer's ``nodes_to_exclude`` (``_nodes_of_layers``)."""
    if calibration is None or len(calibration) == 0:
        raise EdgekitError("INT8 compilation needs a calibration set and none was given",
                           "compile through `edgekit compress` (it draws one from the training split)")
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    act, symmetric, why = PROFILES[profile]
    graph = onnx.load(str(fp32_onnx), load_external_data=False).graph
    input_name = graph.input[0].name
    op_types, kept_float = float_kept_ops({n.op_type for n in graph.node})
    reader = type("Reader", (NpzReader, CalibrationDataReader), {})(calibration, input_name)
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantize the raw graph
            pre = fp32_onnx
        excluded = _nodes_of_layers(pre, float_layers)
        quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        nodes_to_exclude=excluded,
                        activation_type=QuantType.QUInt8 if act == "U8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=calib, reduce_range=reduce_range[0],
                        op_types_to_quantize=op_types,
                        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                                       # TensorRT takes INT8 Q/DQ only; its biases stay float.
                                       "QuantizeBias": profile != "tensorrt"})
    return {"quant_format": "QDQ", "activation_type": act, "weight_type": "S8", "per_channel": True,
            "activation_symmetric": symmetric, "bias": "int32" if profile != "tensorrt" else "float",
            "calibration_method": method, "activation_choice": why, "reduce_range": reduce_range[0],
            "reduce_range_choice": reduce_range[1],
            "calibration_images": int(len(calibration)), "quantizer": "onnxruntime.quantization.quantize_static",
            "kept_float": kept_float,
            **({"float_layers": list(float_layers), "nodes_excluded": excluded} if float_layers else {})}


def _nodes_of_layers(onnx_path: Path, layers: tuple[str, ...]) -> list[str]:
    """The names of the nodes of ``onnx_path`` that belong to the torch modules ``layers``, and of the nodes that
    produce their inputs or consume their outputs. Why the neighbours: ORT quantizes a tensor wherever one of
    its ends is a quantized node, so a layer excluded alone still reads and writes 8-bit tensors (a ReLU kept
    in float between a quantized convolution and the next one changed nothing); with its neighbours excluded
    its input and output tensors stay float."""
    if not layers:
        return []
    import onnx

    from edgekit.models.layer_names import layer_of_onnx_node, within

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    own = [n for n in graph.node if any(within(layer_of_onnx_node(n), m) for m in layers)]
    ins = {t for n in own for t in n.input}
    outs = {t for n in own for t in n.output}
    near = {n.name for n in graph.node if n.op_type != "Constant"
            and (set(n.output) & ins or set(n.input) & outs)}
    names = {n.name for n in own} | near
    return [n.name for n in graph.node if n.name in names]


# Normalization, softmax and GELU of attention models lose most in 8 bits (outliers in LayerNorm
# inputs, softmax's exponent range) and gain little speed: they stay float between Q/DQ pairs.
KEEP_FLOAT = ("LayerNormalization", "Softmax", "Gelu", "Erf", "ReduceMean", "Pow", "Sqrt", "Div")


def float_kept_ops(graph_ops: set[str]) -> tuple[list[str] | None, list[str]]:
    """(op types to quantize, op types kept float): None (ORT's defaults) when the graph has none of
    ``KEEP_FLOAT``, so convolutional graphs quantize exactly as before."""
    kept = sorted(graph_ops & set(KEEP_FLOAT))
    if not kept:
        return None, []
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    quantizable = (set(QDQRegistry) | set(QLinearOpsRegistry)) - set(KEEP_FLOAT)
    return sorted(quantizable & graph_ops), kept
