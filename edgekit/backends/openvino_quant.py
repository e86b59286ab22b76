"""NNCF post-training INT8 for OpenVINO IR, with the accuracy-aware variant when the recipe bounds
the drop (``compile.max_accuracy_drop``): NNCF then reverts the most harmful layers to float until the
validation accuracy is within the bound."""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.runtime.signal_stack import kept_signal_stack


def nncf_int8(ov_model, calibration: np.ndarray | None, validation: tuple[np.ndarray, np.ndarray] | None = None,
              max_accuracy_drop: float | None = None, preset: str = "performance",
              float_layers: tuple[str, ...] = ()) -> tuple[object, dict]:
    """Quantize an ``ov.Model``; returns (quantized model, manifest notes). ``float_layers`` (torch module
    paths) stay float: their ops go to NNCF's ``IgnoredScope(names=...)``."""
    if calibration is None or len(calibration) == 0:
        raise EdgekitError("OpenVINO INT8 needs a calibration set and none was given",
                           "compile through `edgekit compress` (it draws one from the training split)")
    try:
        import nncf
    except ImportError:
        from edgekit.errors import MissingDependency

        raise MissingDependency("nncf", "openvino", "OpenVINO INT8") from None
    _nncf_logs_to_stderr()
    items = [calibration[i:i + 1].astype(np.float32) for i in range(len(calibration))]
    cal_ds = nncf.Dataset(items)
    preset_value = {"performance": nncf.QuantizationPreset.PERFORMANCE,
                    "mixed": nncf.QuantizationPreset.MIXED}[preset]
    meta = {"quantizer": f"nncf {nncf.__version__}", "preset": preset, "calibration_images": len(items),
            "weights": "int8 per-channel symmetric"}
    # Attention graphs: NNCF's transformer scheme keeps LayerNorm/Softmax/GELU paths float and
    # quantizes the MatMuls (the default CNN scheme quantizes them too and hurts accuracy).
    kwargs: dict = {}
    if float_layers:
        ignored = _ops_of_layers(ov_model, float_layers)
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=ignored, validate=False)
        meta.update({"float_layers": list(float_layers), "nodes_excluded": ignored})
    if is_transformer(ov_model):
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
        meta["model_type"] = "transformer"
        meta["kept_float"] = "LayerNorm, Softmax, GELU (nncf.ModelType.TRANSFORMER)"
    if max_accuracy_drop is not None and validation is not None:
        inputs, labels = validation
        batch = ov_model.inputs[0].get_partial_shape()[0]
        step = batch.get_length() if batch.is_static else 64   # a model converted for a fixed batch takes that
        val_items = [(inputs[i:i + step], labels[i:i + step]) for i in range(0, len(inputs), step)]

        def validate(compiled, batches) -> tuple[float, None]:
            output = compiled.output(0)
            correct = total = 0
            for x, y in batches:
                logits = compiled(x)[output]
                correct += int((np.asarray(logits).argmax(1) == y).sum())
                total += len(y)
            return correct / max(total, 1), None

        # NNCF's progress bars go to stderr (keep --json stdout clean); the plugins NNCF creates to collect
        # statistics swap the alternate signal stack (edgekit.runtime.signal_stack).
        with contextlib.redirect_stdout(sys.stderr), kept_signal_stack():
            quantized = nncf.quantize_with_accuracy_control(
                ov_model, cal_ds, nncf.Dataset(val_items), validate, max_drop=max_accuracy_drop / 100.0,
                drop_type=nncf.DropType.ABSOLUTE, preset=preset_value, subset_size=len(items), **kwargs)
        meta.update({"method": "nncf.quantize_with_accuracy_control", "max_accuracy_drop": max_accuracy_drop,
                     "validation_images": int(len(inputs))})
    else:
        with contextlib.redirect_stdout(sys.stderr), kept_signal_stack():
            quantized = nncf.quantize(ov_model, cal_ds, preset=preset_value, subset_size=len(items), **kwargs)
        meta["method"] = "nncf.quantize"
        quantized, meta["float_weight_layers_compressed"] = _compress_float_weights(nncf, quantized)
    return quantized, meta


_NOT_OPS = ("Constant", "Parameter", "Result")


def _ops_of_layers(ov_model, layers: tuple[str, ...]) -> list[str]:
    """Friendly names of the ops of ``ov_model`` that belong to the torch modules ``layers``, and of the ops that
    produce their inputs or read their outputs. Why the neighbours: NNCF quantizes a tensor at the input of the
    op that reads it (a FakeQuantize before a convolution), so a BatchNorm or ReLU kept in float alone still
    feeds an 8-bit tensor to the next convolution (seen: it changed nothing)."""
    from edgekit.models.layer_names import layer_of_openvino_name, within

    ops = [op for op in ov_model.get_ordered_ops() if op.get_type_name() not in _NOT_OPS]
    own = [op for op in ops if any(within(layer_of_openvino_name(op.get_friendly_name()), m) for m in layers)]
    names = {op.get_friendly_name() for op in own}
    for op in own:
        near = [op.input_value(i).get_node() for i in range(op.get_input_size())]
        near += [t.get_node() for out in op.outputs() for t in out.get_target_inputs()]
        names |= {n.get_friendly_name() for n in near if n.get_type_name() not in _NOT_OPS}
    return [op.get_friendly_name() for op in ops if op.get_friendly_name() in names]


def is_transformer(ov_model) -> bool:
    """An attention graph: ScaledDotProductAttention, a Softmax over tokens or a MatMul of two activations."""
    for op in ov_model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "ScaledDotProductAttention":
            return True
        if kind == "Softmax" and op.get_output_partial_shape(0).rank.get_length() >= 3:
            return True
        if kind == "MatMul" and all(op.input_value(i).get_node().get_type_name() != "Constant" for i in range(2)):
            return True
    return False


def _float_weight_layers(ov_model) -> int:
    """Convolutions/MatMuls whose weights are still plain f32/f16 constants after nncf.quantize."""
    count = 0
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul") and op.get_input_size() > 1:
            weight = op.input_value(1).get_node()
            if weight.get_type_name() == "Constant" and weight.get_element_type().get_type_name() in ("f32", "f16"):
                count += 1
    return count


def _compress_float_weights(nncf, quantized) -> tuple[object, int]:
    """Weights NNCF's quantizer leaves in float (it keeps squeeze-excitation blocks unquantized: 40% of
    MobileNetV3-small's weights, so its "INT8" IR was only 1.9x smaller than FP32) get 8-bit weight-only
    compression (``nncf.compress_weights``, INT8_ASYM per channel; decompressed on the fly)."""
    remaining = _float_weight_layers(quantized)
    if remaining == 0:
        return quantized, 0
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.compress_weights(quantized, mode=nncf.CompressWeightsMode.INT8_ASYM)
    return quantized, remaining


def _nncf_logs_to_stderr() -> None:
    """NNCF's logger holds its own handle on stdout (redirect_stdout does not reach it): move it to
    stderr so that `--json` stdout stays a single JSON document."""
    import logging

    for handler in logging.getLogger("nncf").handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stdout:
            handler.setStream(sys.stderr)
