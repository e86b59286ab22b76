"""The PT2E quantizer edgekit uses for LiteRT INT8: litert-torch's ``PT2EQuantizer``, annotating
floating-point tensors only.

litert-torch's add/mul/cat annotators put an activation observer on every input and output of the op,
whatever its dtype (torchao's own XNNPACK quantizer skips non-float inputs; litert-torch's copy does
not). Index arithmetic written with tensors then gets a HistogramObserver on an integer tensor and
calibration fails with ``"histogram_cpu" not implemented for 'Long'`` - e.g. EdgeNeXt's positional
encoding, ``2 * torch.div(arange, 2, rounding_mode='floor')``, whose scalar the quantizer itself turns
into an int64 constant. Integer and bool tensors are indices and masks, not activations: the ops on
them stay unquantized. A graph without such ops is annotated exactly as before (any observed integer
tensor made calibration fail, so no graph that quantized before changes).
"""

from __future__ import annotations

import torch
from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer
from litert_torch.quantize.pt2e_quantizer_utils import propagate_annotation


def tensor_dtype(node: torch.fx.Node, gm: torch.fx.GraphModule) -> torch.dtype | None:
    """The dtype ``node`` produces: its traced value, or the buffer a ``get_attr`` reads (the scalar
    constants the quantizer adds itself carry no traced value); None when unknown."""
    value = node.meta.get("val")
    if isinstance(value, torch.Tensor):
        return value.dtype
    if node.op == "get_attr":
        attr = gm
        for part in str(node.target).split("."):
            attr = getattr(attr, part, None)
        return attr.dtype if isinstance(attr, torch.Tensor) else None
    return None


def drop_non_float_annotations(gm: torch.fx.GraphModule) -> list[str]:
    """Removes the quantization annotation of every node that reads or produces a non-float tensor;
    returns those nodes' names. Unknown dtypes count as float (annotated as litert-torch does)."""

    def non_float(n: torch.fx.Node) -> bool:
        dtype = tensor_dtype(n, gm)
        return dtype is not None and not dtype.is_floating_point

    dropped = []
    for node in gm.graph.nodes:
        annotation = node.meta.get("quantization_annotation")
        if annotation is None:
            continue
        if non_float(node) or any(non_float(i) for i in annotation.input_qspec_map):
            del node.meta["quantization_annotation"]
            dropped.append(node.name)
    return dropped


class FloatOnlyPT2EQuantizer(PT2EQuantizer):
    """litert-torch's static PT2E quantizer, with ops on integer/bool tensors left unquantized."""

    def __init__(self) -> None:
        super().__init__()
        self.unquantized_integer_ops: list[str] = []  # filled by annotate, for the manifest

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        if self.global_config and not self.global_config.input_activation:
            return super().annotate(model)  # dynamic quantization observes weights only
        model = self._annotate_for_static_quantization_config(model)
        self.unquantized_integer_ops = drop_non_float_annotations(model)
        propagate_annotation(model)  # after the drop, so nothing shares an observer with a dropped op
        return model
