"""The PT2E quantizer edgekit uses for LiteRT INT8: litert-torch's ``PT2EQuantizer`` and its
per-channel symmetric config, with these changes.

Scale floor. litert-torch's config floors every activation scale at 2^-12 (``eps=2**-12``, taken from
PyTorch's XNNPACK config, where it kept XNNPACK's old ``requantization scale >= 2^-32`` check
satisfied; current XNNPACK operators only reject a requantization scale ``>= 256``). A tensor whose range is under ~255 * 2^-12 = 0.06 then
gets fewer than 256 levels, and one under 2^-12 quantizes to a constant: a pruned random-weight LeViT-128S
at 64 px has activations of 1e-3 after its stem and logits of 1e-5, and its INT8 file agreed 0% with
PyTorch (131 of its 137 activation tensors sat below the floor). Activations here use torchao's default
floor (float32 eps); an all-zero tensor keeps 2^-12, so a zero output cannot drive
input_scale * weight_scale / output_scale past XNNPACK's 256. A model whose activations are all above
the floor gets the file it got before, byte for byte (seen: ResNet-18, the digits teacher); below it,
XNNPACK still takes the same ops (seen: random-weight MobileNetV3-Small, MobileViT-XXS: same
delegated partitions and latency). Weights keep litert-torch's spec (2^-12 floor).

Float tensors only.

litert-torch's add/mul/cat annotators put an activation observer on every input and output of the op,
whatever its dtype (torchao's own XNNPACK quantizer skips non-float inputs; litert-torch's copy does
not). Index arithmetic written with tensors then gets a HistogramObserver on an integer tensor and
calibration fails with ``"histogram_cpu" not implemented for 'Long'`` - e.g. EdgeNeXt's positional
encoding, ``2 * torch.div(arange, 2, rounding_mode='floor')``, whose scalar the quantizer itself turns
into an int64 constant. Integer and bool tensors are indices and masks, not activations: the ops on
them stay unquantized. A graph without such ops is annotated exactly as before (any observed integer
tensor made calibration fail, so no graph that quantized before changes).

L2 normalization. The converter fuses ``x / max(||x||_2, eps)`` (``F.normalize``: ``linalg_vector_norm`` ->
``clamp_min`` -> ``expand_as`` -> ``div``) into one L2_NORMALIZATION op, whose int8 kernel accepts only the
output scale 1/128 (zero point 0, tflite/kernels/l2norm.cc): a calibrated scale fails at load time (seen:
SwiftFormer's additive attention). Giving the division that fixed scale is not enough: the converter carries
it on through same-scale ops (a MEAN after it) while the next layer's bias was quantized with the calibrated
scale, and the logits saturate (measured). So the division's output stays float: DEQUANTIZE, a float
L2_NORMALIZATION, QUANTIZE where the next quantized op reads it. The rule reads the graph (a division by the
2-norm of its own numerator), not the architecture.
"""

from __future__ import annotations

import dataclasses

import torch
from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
from litert_torch.quantize.pt2e_quantizer_utils import QuantizationAnnotation, QuantizationConfig, propagate_annotation
from torchao.quantization.pt2e.observer import HistogramObserver

from edgekit.backends.tflite_prep import aten_name

LITERT_FLOOR = 2.0 ** -12  # litert-torch's activation (and weight) scale floor


class ActivationObserver(HistogramObserver):
    """litert-torch's histogram observer with torchao's scale floor (float32 eps) instead of 2^-12,
    except for an all-zero tensor, which keeps 2^-12 (nothing to resolve, and XNNPACK's ratio bound)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**{**kwargs, "eps": torch.finfo(torch.float32).eps})

    def calculate_qparams(self):
        scale, zero_point = super().calculate_qparams()
        if float(self.max_val) == float(self.min_val) == 0.0:
            scale = torch.clamp(scale, min=LITERT_FLOOR)
        return scale, zero_point


def int8_config() -> QuantizationConfig:
    """litert-torch's per-channel symmetric static config, activations observed by ActivationObserver."""
    base = get_symmetric_quantization_config(is_per_channel=True)
    act = dataclasses.replace(base.input_activation, observer_or_fake_quant_ctr=ActivationObserver)
    return dataclasses.replace(base, input_activation=act, output_activation=act)


def below_litert_floor(prepared: torch.fx.GraphModule) -> tuple[int, int]:
    """(activation tensors of a calibrated model whose range is under 255 * 2^-12, i.e. that
    litert-torch's floor would have coarsened; all activation tensors), for the manifest."""
    observers = [m for m in prepared.modules() if isinstance(m, ActivationObserver)]
    return sum(float(m.max_val - m.min_val) < 255 * LITERT_FLOOR for m in observers), len(observers)


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


WRAPPER = "wrapped."   # litert_torch.to_channel_last_io holds the user's model as ``wrapped``


# What may stand between a 2-norm and the division by it (eps clamp, broadcast, reshape) in an exported graph.
_NORM_PASSTHROUGH = frozenset({"clamp_min", "clamp", "expand", "expand_as", "view", "reshape", "_unsafe_view"})


def l2_normalized(node: torch.fx.Node) -> bool:
    """``node`` divides a tensor by its own L2 norm (what the converter fuses into L2_NORMALIZATION)."""
    if node.op != "call_function" or aten_name(node) != "div" or len(node.args) < 2:
        return False
    numerator, denominator = node.args[0], node.args[1]
    while isinstance(denominator, torch.fx.Node) and aten_name(denominator) in _NORM_PASSTHROUGH:
        denominator = denominator.args[0]
    if not isinstance(denominator, torch.fx.Node) or aten_name(denominator) != "linalg_vector_norm":
        return False
    order = denominator.args[1] if len(denominator.args) > 1 else denominator.kwargs.get("ord", 2)
    return denominator.args[0] is numerator and float(order) == 2.0


# Ops that move, reshape or cut a tensor without computing on it: LiteRT's converter gives their output the scale of
# their input, so a float tensor stays float through them only when nothing after them observes it either.
_SHAPE_OPS = frozenset({"permute", "transpose", "t", "view", "reshape", "_unsafe_view", "clone", "contiguous",
                        "expand", "squeeze", "unsqueeze", "flatten", "select", "slice", "narrow", "split",
                        "split_with_sizes", "unbind", "chunk", "getitem"})


def keep_output_float(node: torch.fx.Node) -> None:
    """``node``'s output stays float: its own annotation goes, and no consumer observes it, directly or through
    shape ops (an observer after a permute would be carried back to ``node`` by the converter)."""
    node.meta.pop("quantization_annotation", None)
    frontier = [node]
    while frontier:
        current = frontier.pop()
        for user in current.users:
            annotation = user.meta.get("quantization_annotation")
            if annotation is not None:
                annotation.input_qspec_map.pop(current, None)
            elif user.op == "call_function" and aten_name(user) in _SHAPE_OPS:
                frontier.append(user)


def float_l2_normalizations(gm: torch.fx.GraphModule) -> list[str]:
    """Leaves each L2-normalizing division's output in float (its consumers take it unquantized), so LiteRT
    runs L2_NORMALIZATION in float; returns those divisions' names."""
    fixed = [node for node in gm.graph.nodes if l2_normalized(node)]
    for node in fixed:
        keep_output_float(node)
    return [node.name for node in fixed]


def float_softmaxes(gm: torch.fx.GraphModule) -> list[str]:
    """Leaves the output of every softmax the annotator did not give LiteRT's fixed int8 scale in float; returns
    their names.

    LiteRT's int8 SOFTMAX accepts only output scale 1/256 (tflite/kernels/activations.cc). litert-torch's
    fixed-qparams annotator matches ``aten._softmax``, while torch.export records ``aten.softmax.int``, so a
    softmax observed after it (a linear layer reading it, through a permute) took that layer's calibrated
    scale and the file failed to load (seen: talking-heads attention). Giving it the fixed scale instead loads,
    but the converter carries 1/256 on through the permute into a layer whose bias was quantized with the
    calibrated scale (as for L2 normalization; on a random-weight talking-heads block the largest logit error
    was 42% of the largest logit, against 6.5% kept float). A softmax nothing observes is float already: its
    file does not change."""
    fixed = [node for node in gm.graph.nodes if node.op == "call_function"
             and aten_name(node) in ("softmax", "_softmax") and "quantization_annotation" not in node.meta]
    for node in fixed:
        keep_output_float(node)
    return [node.name for node in fixed]


# Layers whose output a clamp may follow, and the clamps (nn.ReLU6 exports as hardtanh, F.relu6 as relu6).
_CLAMPED = frozenset({"conv1d", "conv2d", "convolution", "linear", "addmm"})
_CLAMPS = frozenset({"hardtanh", "hardtanh_", "relu6", "clamp"})


def fused_clamps(gm: torch.fx.GraphModule, config: QuantizationConfig) -> list[str]:
    """Quantizes a clamp that directly follows a convolution or linear layer (ReLU6 and the like) as litert-torch
    quantizes a ReLU there: the layer's output is not observed, the clamp's is; returns the clamps' names.

    litert-torch fuses conv+ReLU that way, but lets a hardtanh share the layer's observer, so the layer's output
    is quantized over its range *before* the clamp: a ReLU6 network whose convolutions reach +-50 then has ~15
    of its 256 levels in 0..6 (EfficientNet-Lite0 with real weights: 5 dB SQNR after its second block, 91.7%
    top-1 agreement with PyTorch on real photos). The clamp's own range is what the next layer reads, and the
    converter fuses the clamp into the layer as its activation (CONV_2D with RELU6)."""
    fused = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or aten_name(node) not in _CLAMPS or not node.args:
            continue
        layer = node.args[0]
        annotation = layer.meta.get("quantization_annotation") if isinstance(layer, torch.fx.Node) else None
        if (annotation is None or aten_name(layer) not in _CLAMPED or len(layer.users) != 1
                or annotation.output_qspec is None or "quantization_annotation" in node.meta):
            continue
        annotation.output_qspec = None
        node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=config.output_activation,
                                                                      _annotated=True)
        fused.append(node.name)
    return fused


def module_path(node: torch.fx.Node) -> str | None:
    """The user's torch module path of an exported node (its innermost ``nn_module_stack`` entry, without the
    NHWC wrapper's ``wrapped.``); None for a node made outside any module."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path = str(list(stack.values())[-1][0])
    return path[len(WRAPPER):] if path.startswith(WRAPPER) else path


def drop_layer_annotations(gm: torch.fx.GraphModule, layers: tuple[str, ...]) -> list[str]:
    """Removes the quantization annotation of every node of the torch modules ``layers`` and of the nodes next
    to them (producing their inputs, reading their outputs); returns those nodes' names. Why the neighbours: an
    annotated op observes its inputs and output, so a layer left alone between two quantized ones still reads
    and writes 8-bit tensors; with its neighbours unannotated too, they stay float."""
    from edgekit.models.layer_names import within

    return drop_node_annotations(gm, [n for n in gm.graph.nodes if n.op == "call_function" and (
        path := module_path(n)) is not None and any(within(path, m) for m in layers)])


def drop_node_annotations(gm: torch.fx.GraphModule, own: list[torch.fx.Node]) -> list[str]:
    """Removes the quantization annotation of ``own`` and their neighbours (see ``drop_layer_annotations``), and
    of every op that shares an observer with one of them; returns the names of the nodes left float."""
    near = {n for n in own}
    for n in own:
        near |= {i for i in n.all_input_nodes if i.op == "call_function"} | {u for u in n.users if u.op == "call_function"}
    dropped = []
    for node in gm.graph.nodes:
        if node in near and node.meta.pop("quantization_annotation", None) is not None:
            dropped.append(node.name)
    # an op whose quantization is shared with a dropped one (a pooling's output shares its input's observer)
    # would point at an observer that no longer exists: it stays float too
    while True:
        gone = {n for n in gm.graph.nodes if n.name in dropped}
        sharing = [n for n in gm.graph.nodes if "quantization_annotation" in n.meta
                   and _shares_with(n.meta["quantization_annotation"], gone)]
        if not sharing:
            return dropped
        for node in sharing:
            del node.meta["quantization_annotation"]
            dropped.append(node.name)


# The convolution and linear ops whose weight the quantizer observes per channel.
_WEIGHTED = frozenset({"conv1d", "conv2d", "conv3d", "convolution", "linear"})


def computed_kernels(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """Convolutions and linear layers whose weight is computed from the model's input at run time (CondConv's
    per-sample kernels, dynamic filters), not only from parameters (a standardized weight is still a constant).
    litert-torch's converter lays a quantized weight out as a constant filter (its NHWC pass permutes it) and
    fails on these; left float, the converter keeps the op as it is."""
    return [n for n in gm.graph.nodes if n.op == "call_function" and aten_name(n) in _WEIGHTED
            and len(n.args) > 1 and isinstance(n.args[1], torch.fx.Node) and _reads_input(n.args[1])]


def _reads_input(node: torch.fx.Node) -> bool:
    """Whether ``node``'s value depends on a graph input (a placeholder), walking its inputs back."""
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n.op == "placeholder":
            return True
        if n not in seen:
            seen.add(n)
            todo.extend(n.all_input_nodes)
    return False


def _shares_with(annotation, nodes: set) -> bool:
    """True when one of ``annotation``'s specs is a SharedQuantizationSpec on an edge or node of ``nodes``."""
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    specs = [*annotation.input_qspec_map.values(), annotation.output_qspec]
    for spec in specs:
        if isinstance(spec, SharedQuantizationSpec):
            ref = spec.edge_or_node
            if (ref in nodes) if not isinstance(ref, tuple) else any(r in nodes for r in ref):
                return True
    return False


class FloatOnlyPT2EQuantizer(PT2EQuantizer):
    """litert-torch's static PT2E quantizer, with ops on integer/bool tensors left unquantized, and the ops of
    ``float_layers`` (the user's torch module paths: mixed precision) and their neighbours left in float."""

    def __init__(self, float_layers: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.float_layers = tuple(float_layers)
        self.unquantized_integer_ops: list[str] = []  # filled by annotate, for the manifest
        self.float_ops: list[str] = []                # filled by annotate: the nodes float_layers left float
        self.l2_normalizations: list[str] = []        # L2-normalizing divisions left in float
        self.float_softmaxes: list[str] = []          # softmaxes left in float
        self.fused_clamps: list[str] = []             # clamps quantized as fused into their layer
        self.computed_kernels: list[str] = []         # nodes left float around run-time-computed weights

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        if self.global_config and not self.global_config.input_activation:
            return super().annotate(model)  # dynamic quantization observes weights only
        model = self._annotate_for_static_quantization_config(model)
        self.unquantized_integer_ops = drop_non_float_annotations(model)
        self.l2_normalizations = float_l2_normalizations(model)
        self.float_softmaxes = float_softmaxes(model)
        self.fused_clamps = fused_clamps(model, self.global_config)
        # the whole layer around such a kernel stays float: its reshapes share the kernel's scale in LiteRT
        kernels = computed_kernels(model)
        layers = tuple(sorted({path for n in kernels if (path := module_path(n))}))
        self.computed_kernels = (drop_layer_annotations(model, layers) if layers else []) + drop_node_annotations(
            model, [n for n in kernels if module_path(n) is None])
        if self.float_layers:
            self.float_ops = drop_layer_annotations(model, self.float_layers)
        propagate_annotation(model)  # after the drop, so nothing shares an observer with a dropped op
        return model
