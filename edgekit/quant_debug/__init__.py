"""Per-layer INT8 debugging: where, layer by layer, an INT8 file departs from its FP32 sibling, measured through
the runtime that runs both (ONNX Runtime extra graph outputs, OpenVINO extra node outputs, LiteRT preserved
tensors), with layers named by the user's torch module paths (``edgekit.models.layer_names``).

``compare_files(runtime, fp32, int8, images) -> LayerReport`` is the measurement; ``LayerReport.divergence``
names the first broken layer, ``LayerReport.worst(n)`` ranks layers by SQNR (what a mixed-precision search keeps
in float first), and each ``LayerError.nodes`` lists the INT8 graph's nodes of that layer.
"""

from edgekit.quant_debug.compare import compare_files
from edgekit.quant_debug.records import (FLOOR_DB, STEP_DB, Divergence, DivergenceRule, LayerError, LayerReport,
                                         first_divergence)

__all__ = ["FLOOR_DB", "STEP_DB", "Divergence", "DivergenceRule", "LayerError", "LayerReport", "compare_files",
           "first_divergence"]
