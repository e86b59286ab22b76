"""A probe: one user-named layer's output tensor, found in both the FP32 file and the INT8 file of one runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from edgekit.models.layer_names import ROOT, within


@dataclass(frozen=True)
class Probe:
    layer: str            # module path ("" for an op outside any module)
    op: str               # the op that produced the tensor in the FP32 graph
    reference: str        # the tensor (or node) to read in the FP32 file
    quantized: str        # the same tensor as the INT8 file's consumers see it (after its Q/DQ, if any)
    nodes: tuple[str, ...] = ()   # the INT8 graph's compute nodes of this layer


def layer_outputs(candidates: Sequence[Probe]) -> list[Probe]:
    """One probe per layer: its last tensor in graph order (the module's output), ordered by where that tensor
    is produced. Ops outside any module each keep their own probe."""
    last: dict[str, int] = {}
    for i, probe in enumerate(candidates):
        last[probe.layer if probe.layer != ROOT else f"\0{i}"] = i
    return [candidates[i] for i in sorted(last.values())]


def with_nodes(probes: Sequence[Probe], int8_nodes: Sequence[tuple[str, str]], layer_of: Callable[[str], str]
               ) -> list[Probe]:
    """``probes`` with the INT8 graph's compute nodes of each layer: those named after the layer (or a submodule),
    and the node that produces the probed tensor there (a quantizer may fuse a module's op into its neighbour's
    node: ONNX Runtime folds ``features.1.act``'s ReLU into ``features.1.conv``'s Conv, which then produces the
    ReLU's tensor). ``int8_nodes``: (node name, what it produces: tensor name or, for OpenVINO, its own name)."""
    out = []
    for p in probes:
        nodes = tuple(n for n, produced in int8_nodes
                      if produced in (p.quantized, p.reference)
                      or (p.layer != ROOT and layer_of(n) != ROOT and within(layer_of(n), p.layer)))
        out.append(Probe(p.layer, p.op, p.reference, p.quantized, nodes))
    return out
