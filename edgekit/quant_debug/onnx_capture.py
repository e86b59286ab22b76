"""ONNX Runtime: probes from an FP32 ONNX file and its QDQ INT8 sibling (same exporter, same tensor names: ONNX
Runtime's quantizer keeps them and adds ``<tensor>_QuantizeLinear``/``_DequantizeLinear`` nodes), and their values,
read by adding the probed tensors as graph outputs.

Why not ``onnxruntime.quantization.qdq_loss_debug``: its ``modify_model_output_intermediate_tensors`` saves every
float tensor flattened to 1-D (the channel axis the SQNR needs is lost) and ``collect_activations`` keeps all of
them for all images in memory; the tensor naming it matches on is the one used here.

The extra outputs are read from a session with ONNX Runtime's full graph optimisation: a tensor that is a graph
output cannot be fused away, so the layers probed run their Q/DQ arithmetic (the values every consumer sees);
kernels that fuse a whole Q-op-Q chain into one int8 kernel are not what is measured at those points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from edgekit.models.layer_names import layer_of_onnx_node
from edgekit.quant_debug.probes import Probe, layer_outputs, with_nodes

DQ_SUFFIX, Q_SUFFIX = "_DequantizeLinear_Output", "_QuantizeLinear_Input"
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_FLOAT = (1, 10, 16)   # onnx.TensorProto FLOAT, FLOAT16, BFLOAT16


def onnx_probes(fp32: Path, int8: Path) -> list[Probe]:
    """One probe per layer of the FP32 graph whose output tensor the INT8 graph also computes."""
    import onnx

    ref = onnx.shape_inference.infer_shapes(onnx.load(str(fp32)))
    qmodel = onnx.load(str(int8))
    types = {v.name: v.type.tensor_type.elem_type for v in (*ref.graph.value_info, *ref.graph.output)}
    produced = {out for n in qmodel.graph.node for out in n.output}
    candidates = []
    for node in ref.graph.node:
        for tensor in node.output:
            if types.get(tensor) not in _FLOAT:
                continue
            if tensor + DQ_SUFFIX in produced:
                quantized = tensor + DQ_SUFFIX
            elif tensor in produced:
                quantized = tensor
            else:
                continue   # fused away in the INT8 graph (a ReLU folded into its convolution's output)
            candidates.append(Probe(layer_of_onnx_node(node), node.op_type, tensor, quantized))
    compute = [(n.name, n.output[0] if n.output else "") for n in qmodel.graph.node if n.op_type not in QDQ_OPS]
    layers = {n.name: layer_of_onnx_node(n) for n in qmodel.graph.node}
    return with_nodes(layer_outputs(candidates), compute, lambda name: layers.get(name, ""))


def onnx_values(path: Path, tensors: list[str], images: np.ndarray, batch: int = 8, threads: int = 1
                ) -> Iterator[dict[str, np.ndarray]]:
    """Batch by batch, the values of ``tensors`` in the ONNX file at ``path`` run by ONNX Runtime on ``images``."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    outputs = {o.name for o in model.graph.output}
    for name in dict.fromkeys(tensors):
        if name not in outputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed, fixed = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]
    batch = fixed if isinstance(fixed, int) and fixed > 0 else batch   # a file written for a fixed batch
    names = list(dict.fromkeys(tensors))
    for i in range(0, len(images), batch):
        x = np.ascontiguousarray(images[i:i + batch], dtype=np.float32)
        yield dict(zip(names, session.run(names, {feed: x})))
