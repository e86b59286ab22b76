"""Latency estimates for devices we cannot run on: a per-layer roofline, calibrated on measurements.

For each compute layer (conv, linear, pooling) of the model, at batch 1::

    t_layer = max(2 * MACs / (peak_ops[precision] * efficiency[kind]),  bytes / memory_bandwidth) + overhead

and for each element-wise or data-movement op (``EPILOGUE_OPS``, ``LOOKUP_OPS``, ``ELEMENTWISE_OPS``)::

    t_op = (input + output elements) * ns_per_element[kind, precision]

- MACs per layer come from ``complexity.count_macs`` (torch's FLOP counter); bytes are weights +
  input + output activations at the precision's element size. BatchNorm and ReLU/ReLU6 cost nothing:
  every runtime we target folds them into the preceding conv at every precision (QDQ INT8 folds a ReLU
  into the quantized conv's output range).
- Element-wise ops are where precisions part ways, so they are costed per precision, in three kinds
  (seen in ONNX Runtime 1.32's optimised graphs of MobileNetV3, EfficientNet and ResNet, and of one-op
  test graphs): ``epilogue`` ops (HardSwish, HardSigmoid, residual add) are fused into the conv kernel by
  ORT FP32, but its QDQ INT8 graph keeps them apart: HardSwish becomes a float HardSigmoid between
  DequantizeLinear/QuantizeLinear plus a QLinearMul, a residual ``+`` a QLinearAdd. ``lookup`` ops
  (Sigmoid, SiLU) are the ones the QDQ INT8 graph turns into a table lookup: EfficientNet-B0's 65
  Sigmoids (49 from SiLU = x * sigmoid(x)) all become QLinearSigmoid (256-entry table per uint8 value,
  no float work; SiLU adds a QLinearMul), while Tanh, GELU and HardSigmoid stay float between DQ/Q
  (FP32 runs SiLU as one QuickGelu kernel and fuses a Sigmoid that follows a conv). ``elementwise`` ops
  (the squeeze-excitation ``scale * x``, Tanh, GELU, concat/copies of channel shuffles) run as their
  own kernels at every precision. Their time per element (``epilogue_ns``, ``lookup_ns``,
  ``elementwise_ns``) is fitted per precision; the host fit gives FP32 ``epilogue_ns`` ~0 (fused) and
  INT8 a real cost, which is why INT8 MobileNetV3 is not faster than FP32 on the host although its
  convs are. Targets without fitted values get 0 for epilogue and element-wise ops (fused: the roofline
  they were calibrated with) and cost lookups like element-wise ops (what they were before the kind
  existed). ORT's other lookup op, QLinearLeakyRelu, is not costed: FP32 fuses LeakyReLU like ReLU.
- ``peak_gops`` (per precision) and ``memory_bandwidth_gbps`` are the target's published figures
  (targets/*.yaml ``device``); ``runtime_efficiency`` (the fraction of peak a runtime reaches on dense
  and on depthwise convolutions), ``layer_overhead_us`` (per-layer dispatch cost) and the per-element
  costs are calibrated: on this host by ``benchmarks/estimator_accuracy.py`` against ONNX Runtime
  measurements, on devices from their published latencies (see each target file). A backend with its
  own published device latencies (ExecuTorch on a Raspberry Pi: Arm's numbers) has its own figures in the
  target file (``device.backends.<name>``, laid over the device's); an artifact is estimated with its
  backend's.

Everything this module returns is labelled ``estimated`` and carries the model that produced it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.models.complexity import compute_calls, count_macs, layer_io_shapes, op_calls
from edgekit.spec import ModelSpec
from edgekit.target import Target
from edgekit.vocab import Part, Precision

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
# Used when a target file has no calibrated factors: typical of an inference runtime on a CPU.
DEFAULT_EFFICIENCY = {"dense": 0.5, "depthwise": 0.1, "linear": 0.3, "memory": 0.5}
DEFAULT_OVERHEAD_US = 10.0
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
# aten ops (in-place variants included) costed per element, by kind (module docstring): those a runtime
# may fuse into the producing conv, those QDQ INT8 runs as table lookups, and those that are kernels of
# their own at every precision.
EPILOGUE_OPS = frozenset({"hardswish", "hardsigmoid", "add"})
LOOKUP_OPS = frozenset({"sigmoid", "silu"})
ELEMENTWISE_OPS = frozenset({"mul", "sub", "div", "gelu", "tanh", "cat", "clone"})
OP_KINDS = {**dict.fromkeys(EPILOGUE_OPS, "epilogue"), **dict.fromkeys(LOOKUP_OPS, "lookup"),
            **dict.fromkeys(ELEMENTWISE_OPS, "elementwise")}
# The per-element cost of each kind: keys of runtime_efficiency / precision_efficiency in target files,
# which (like overhead_us) are not efficiency factors. A target without a kind's key costs it like its
# fallback kind (lookups were element-wise ops before they had their own figure), else as fused (0).
NS_PER_ELEMENT = {"epilogue": "epilogue_ns", "lookup": "lookup_ns", "elementwise": "elementwise_ns"}
NS_FALLBACK = {"lookup": "elementwise"}
NON_EFFICIENCY_KEYS = ("overhead_us", *NS_PER_ELEMENT.values())


@dataclass
class LayerCost:
    name: str
    kind: str          # dense | depthwise | linear | pool | epilogue | lookup | elementwise
    macs: int
    weights: int       # parameter count
    activations: int   # input + output elements


def layer_costs(module: nn.Module, spec: ModelSpec) -> list[LayerCost]:
    """Per-layer MACs, weights and activation sizes at batch 1 (forward hooks + torch's FLOP counter),
    then one ``epilogue`` / ``lookup`` / ``elementwise`` entry per call of such an op (torch's dispatcher)."""
    total_macs, macs = count_macs(module, spec, per_layer=True)
    shapes = layer_io_shapes(module, spec, (nn.Conv2d, nn.Linear, *POOLS))
    sizes = {name: sum(math.prod(i) for i in ins) + (math.prod(out) if out is not None else 0)
             for name, (ins, out) in shapes.items()}
    costs = []
    for name, m in module.named_modules():
        if name not in sizes:
            continue
        if isinstance(m, nn.Conv2d):
            kind = "depthwise" if m.groups > 1 and m.groups == m.in_channels else "dense"
        elif isinstance(m, nn.Linear):
            kind = "linear"
        else:
            kind = "pool"
        costs.append(LayerCost(name, kind, int(macs.get(name, 0)), sum(p.numel() for p in m.parameters(recurse=False)),
                               sizes[name]))
    if not any(c.macs for c in costs) and total_macs:
        # the compute is in functional calls (a .pt2 program), not in Conv2d/Linear modules: cost it per aten call
        costs = [LayerCost(f"{kind}#{i}", kind, macs_i, weights, elements)
                 for i, (kind, macs_i, weights, elements) in enumerate(compute_calls(module, spec))]
    for i, (op, inputs, output) in enumerate(op_calls(module, spec, frozenset(OP_KINDS))):
        costs.append(LayerCost(f"{op}#{i}", OP_KINDS[op], 0, 0, inputs + output))
    return costs


@dataclass
class DeviceModel:
    """The numbers the roofline needs for one device and precision."""

    name: str
    peak_gops: float
    bandwidth_gbps: float
    efficiency: dict[str, float]
    overhead_us: float
    bytes_per_element: int
    calibrated: str        # where the efficiency factors come from
    # ns per input+output element of an epilogue / element-wise op (``NS_PER_ELEMENT``); 0 = fused
    ns_per_element: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_target(cls, target: Target, precision: str, threads: int | None = None,
                    backend: str | None = None) -> "DeviceModel":
        """``threads`` below the target's count scales peak ops/s down (peak figures are for all cores);
        ``backend``'s own figures (``device.backends``), where the target file has them, replace the device's."""
        dev = target.device.for_backend(backend)
        if precision not in dev.peak_gops or not dev.memory_bandwidth_gbps:
            raise EdgekitError(f"target {target.name} has no peak_gops for {precision} or no memory_bandwidth_gbps",
                               "add them to the target's device section to get estimates")
        own = dict(dev.precision_efficiency.get(precision, {}))
        merged = {**dev.runtime_efficiency, **own}
        efficiency = {**DEFAULT_EFFICIENCY, **{k: v for k, v in merged.items() if k not in NON_EFFICIENCY_KEYS}}
        ns_per_element = {kind: float(merged.get(key, 0.0)) for kind, key in NS_PER_ELEMENT.items()}
        for kind, fallback in NS_FALLBACK.items():
            if NS_PER_ELEMENT[kind] not in merged:
                ns_per_element[kind] = ns_per_element[fallback]
        overhead = own.get("overhead_us", dev.layer_overhead_us)
        overhead = overhead if overhead is not None else DEFAULT_OVERHEAD_US
        share = min(threads, target.threads) / target.threads if threads and target.threads else 1.0
        return cls(name=target.name, peak_gops=float(dev.peak_gops[precision]) * share,
                   bandwidth_gbps=float(dev.memory_bandwidth_gbps), efficiency=efficiency, overhead_us=overhead,
                   bytes_per_element=BYTES_PER_ELEMENT.get(precision, 4),
                   calibrated=dev.calibrated_on or "defaults (not calibrated)", ns_per_element=ns_per_element)


def roofline_ms(costs: list[LayerCost], device: DeviceModel, batch: int = 1) -> dict:
    """Estimated latency and how much of it is compute-bound."""
    total, compute_bound = 0.0, 0.0
    for c in costs:
        if c.kind in NS_PER_ELEMENT:   # streaming ops: per-element time (fitted; includes their dispatch)
            total += c.activations * batch * device.ns_per_element.get(c.kind, 0.0) * 1e-9
            continue
        eff = device.efficiency.get(c.kind, device.efficiency["dense"]) if c.kind != "pool" else 1.0
        t_compute = 2.0 * c.macs * batch / (device.peak_gops * 1e9 * eff) if c.macs else 0.0
        t_memory = (c.weights + c.activations * batch) * device.bytes_per_element / (
            device.bandwidth_gbps * 1e9 * device.efficiency.get("memory", 1.0))
        t = max(t_compute, t_memory) + device.overhead_us * 1e-6
        total += t
        if t_compute >= t_memory:
            compute_bound += t
    return {"latency_ms": total * 1e3, "compute_bound_fraction": compute_bound / total if total else 0.0}


def estimate(costs: list[LayerCost], target: Target, precision: str, batch: int = 1,
             backend: str | None = None) -> dict:
    device = DeviceModel.from_target(target, precision, target.threads, backend)
    result = roofline_ms(costs, device, batch)
    own = backend in target.device.backends
    return {"kind": "estimated", "target": target.name, "precision": precision, "batch": batch,
            **({"backend": backend} if own else {}),
            "latency_ms": round(result["latency_ms"], 4),
            "compute_bound_fraction": round(result["compute_bound_fraction"], 3),
            "model": "roofline (per-layer MACs and bytes; peak ops/s, bandwidth, runtime efficiency)",
            "calibrated_on": device.calibrated,
            "device_figures": {k: v for k, v in asdict(device).items() if k != "name"}}


def estimate_module(module: nn.Module, spec: ModelSpec, target: Target, precision: Precision, batch: int = 1,
                    backend: str | None = None) -> dict:
    return estimate(layer_costs(module, spec), target, precision, batch, backend)


def estimate_for_bundle(manifest, bundle: Path, artifact) -> dict:
    """Estimate for an artifact (``manifest.ArtifactRecord``) of a bundle on the bundle's target, from
    the model the artifact was compiled from (artifacts/model.pt; a split part's own module)."""
    from edgekit.models import load_model

    if artifact.part == Part.INPUT:   # the bundle keeps the final model only; compress estimated this one
        raise EdgekitError("the input model's artifact is estimated at compress time (the bundle has no input model.pt)")
    path = manifest.final_model.path
    if not path or not (bundle / path).is_file():
        raise EdgekitError("the bundle has no artifacts/model.pt to estimate from")
    model = load_model(str(bundle / path))  # the one loader: refuses anything but edgekit's own weights-only file
    module, spec = model.module, model.spec
    if artifact.part != Part.WHOLE:
        from edgekit.split.deploy import split_parts

        part = dict(zip((Part.HEAD, Part.TAIL), split_parts(model)))[artifact.part]
        module, spec = part.module, part.spec
    return estimate_module(module, spec, manifest.target, artifact.precision, backend=artifact.backend)


def fit_efficiency(samples: list[tuple[list[LayerCost], float]], base: DeviceModel) -> dict:
    """Calibrate efficiency (dense / depthwise / linear compute, memory bandwidth), per-layer overhead and
    the per-element cost of each streaming kind (``NS_PER_ELEMENT``) on measured latencies (ms),
    minimising squared log error (relative error matters, not absolute). Bounded least squares in log
    space: efficiencies at most 1 (a fraction of the published peak), costs positive.

    A streaming kind that no sample contains cannot be fitted (the data say nothing about it; the
    optimiser would return its starting guess). It gets its physical floor instead: the roofline's own
    memory term for its bytes, ``bytes_per_element / (bandwidth * memory efficiency)`` per element, the
    cost of an op that streams its input and output and does no arithmetic - what a table lookup is
    (QLinearSigmoid). This is what leave-one-out gives the one host model with lookups (EfficientNet-B0)."""
    from scipy.optimize import least_squares

    keys = ("dense", "depthwise", "linear", "memory")
    present = {c.kind for costs, _ in samples for c in costs}
    kinds = tuple(k for k in NS_PER_ELEMENT if k in present)

    def device(v) -> DeviceModel:
        x = np.exp(v)
        efficiency = dict(zip(keys, map(float, x[:4])))
        floor = base.bytes_per_element / (base.bandwidth_gbps * efficiency["memory"])   # ns per element
        return DeviceModel(**{**asdict(base), "efficiency": efficiency, "overhead_us": float(x[4]),
                              "ns_per_element": {k: floor for k in NS_PER_ELEMENT} | dict(zip(kinds, map(float, x[5:])))})

    def residuals(v):
        d = device(v)
        return [np.log(roofline_ms(costs, d)["latency_ms"] / measured) for costs, measured in samples]

    start = np.log([0.5, 0.1, 0.3, 0.5, 5.0] + [0.5] * len(kinds))
    lower = np.log([1e-4] * 4 + [1e-3] + [1e-5] * len(kinds))
    upper = np.array([0.0] * 4 + [np.log(100.0)] * (1 + len(kinds)))
    best = least_squares(residuals, start, bounds=(lower, upper), diff_step=1e-3)
    fitted = device(best.x)
    return {"runtime_efficiency": {k: round(v, 4) for k, v in fitted.efficiency.items()},
            "layer_overhead_us": round(fitted.overhead_us, 3),
            **{NS_PER_ELEMENT[k]: round(v, 4) for k, v in fitted.ns_per_element.items()},
            "unfitted_at_floor": [k for k in NS_PER_ELEMENT if k not in kinds],
            "rms_log_error": float(np.sqrt(np.mean(np.square(best.fun))))}


PUBLISHED_KEY = re.compile(r"^(?P<model>.+)_(?P<size>\d+)_(?P<precision>fp32|fp16|int8)$")


def published_checks(targets: list[Target] | None = None) -> list[dict]:
    """The estimate against every published latency in the target files (``published_ms`` keys are
    ``<torchvision model>_<size>_<precision>``, the device's and each backend's own): the per-device error,
    and which precision it ranks faster."""
    from edgekit.target import list_targets

    checks = []
    for target in targets or list_targets():
        for backend in (None, *target.device.backends):
            checks += _published_checks(target, backend)
    return checks


def _published_checks(target: Target, backend: str | None) -> list[dict]:
    import torchvision

    checks = []
    for key, published in target.device.for_backend(backend).published_ms.items():
        m = PUBLISHED_KEY.match(key)
        if not m or m["precision"] not in target.device.peak_gops:
            continue
        size = int(m["size"])
        module = torchvision.models.get_model(m["model"], weights=None, num_classes=1000).eval()
        spec = ModelSpec(input_shape=(3, size, size), num_classes=1000)
        est = estimate(layer_costs(module, spec), target, m["precision"], backend=backend)["latency_ms"]
        checks.append({"target": target.name, **({"backend": backend} if backend else {}),
                       "check": f"{m['model']} {size} px", "precision": m["precision"],
                       "published_ms": published, "estimated_ms": round(est, 3),
                       "error_pct": round((est / published - 1) * 100, 1)})
    return checks


def attach_estimates(artifacts: list, model, target: Target) -> None:
    """Puts a target-device estimate into ``artifact.metrics["estimate"]`` where no measurement on the
    device exists: every artifact when the target is a remote device, otherwise those that cannot run
    here (``runnable_here: false``, e.g. TensorRT inputs). Never overwrites measured numbers."""
    costs = None
    for artifact in artifacts:
        if target.reach == "local" and artifact.runnable_here:
            continue
        try:
            costs = costs if costs is not None else layer_costs(model.module, model.spec)
            artifact.metrics["estimate"] = estimate(costs, target, artifact.precision, backend=artifact.backend)
        except EdgekitError as err:
            artifact.metrics["estimate"] = {"kind": "estimated", "error": str(err)}
