"""OpenVINO: probes from an FP32 IR and its NNCF INT8 sibling, and their values, read by adding the probed nodes'
outputs as model outputs (``ov.Model.add_outputs``) and compiling on the CPU plugin as the artifact runs.

NNCF inserts a ``FakeQuantize`` named ``<node>/fq_output_0`` after each quantized activation and keeps every other
node's friendly name, so the INT8 value of FP32 node ``N`` is the output of ``N/fq_output_0`` (what the next layer
reads). Only those quantization points and the model's output are probed: where a convolution's own output is
also requested, OpenVINO 2026.4's CPU plugin returns zeros for the FakeQuantize after it (its conv+FQ fusion),
and the error INT8 adds is in the quantized tensors anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from edgekit.models.layer_names import layer_of_openvino_name
from edgekit.quant_debug.probes import Probe, layer_outputs, with_nodes

FQ_SUFFIX = "/fq_output_0"
_SKIP = {"Parameter", "Result", "Constant", "Convert", "ShapeOf", "FakeQuantize"}
_FLOAT = {"f32", "f16", "bf16"}


def _ops(ov, path: Path) -> list:
    return [op for op in ov.Core().read_model(str(path)).get_ordered_ops()]


def openvino_probes(fp32: Path, int8: Path) -> list[Probe]:
    """One probe per layer of the FP32 IR whose output node the INT8 IR also has."""
    import openvino as ov

    qnames = {op.get_friendly_name(): op.get_type_name() for op in _ops(ov, int8)}
    ops = _ops(ov, fp32)
    outputs = {op.input_value(0).get_node().get_friendly_name() for op in ops if op.get_type_name() == "Result"}
    candidates = []
    for op in ops:
        name, kind = op.get_friendly_name(), op.get_type_name()
        if kind in _SKIP or op.get_output_size() != 1 or op.get_output_element_type(0).get_type_name() not in _FLOAT:
            continue
        if qnames.get(name + FQ_SUFFIX) == "FakeQuantize":
            quantized = name + FQ_SUFFIX
        elif name in qnames and name in outputs:
            quantized = name
        else:
            continue
        candidates.append(Probe(layer_of_openvino_name(name), kind, name, quantized))
    compute = [(n, n) for n, kind in qnames.items() if kind not in _SKIP]
    return with_nodes(layer_outputs(candidates), compute, layer_of_openvino_name)


def openvino_values(path: Path, nodes: list[str], images: np.ndarray, batch: int = 8, threads: int = 1,
                    precision_hint: str | None = "f32") -> Iterator[dict[str, np.ndarray]]:
    """Batch by batch, the output of each node named in ``nodes`` of the IR at ``path`` on ``images``."""
    import openvino as ov

    from edgekit.runtime.signal_stack import kept_signal_stack

    core = ov.Core()
    model = core.read_model(str(path))
    by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    names = list(dict.fromkeys(nodes))
    model.add_outputs([by_name[n].output(0) for n in names])
    # model outputs in order (the compiled model keeps it); the original Result may come before or after the added
    producers = [out.get_node().input_value(0).get_node().get_friendly_name() for out in model.outputs]
    index = {n: producers.index(n) for n in names}
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
    if precision_hint:
        config["INFERENCE_PRECISION_HINT"] = precision_hint
    with kept_signal_stack():
        compiled = core.compile_model(model, "CPU", config)
    try:
        request = compiled.create_infer_request()
        ports = [compiled.outputs[index[n]] for n in names]
        for i in range(0, len(images), batch):
            result = request.infer({0: np.ascontiguousarray(images[i:i + batch], dtype=np.float32)})
            yield {n: np.array(result[port], copy=True) for n, port in zip(names, ports)}
    finally:
        with kept_signal_stack():
            request = compiled = None
