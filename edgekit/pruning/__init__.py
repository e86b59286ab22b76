"""Pruning engines behind the ``prune`` stage.

- ``structured``: channel/filter pruning with torch-pruning's dependency graph (real dense speedups).
- ``sparsity``: unstructured magnitude and 2:4 semi-structured zeroing (no dense-runtime speedup).
- ``measure``: ONNX Runtime latency of a PyTorch module (what latency targets and reports use).
"""

from edgekit.pruning.layers import channel_table, classifier_name, protected_layers
from edgekit.pruning.measure import ort_latency, ort_latency_interleaved
from edgekit.pruning.sparsity import semi_structured_2_4, unstructured_magnitude
from edgekit.pruning.structured import StructuredPlan, structured_prune

__all__ = ["StructuredPlan", "channel_table", "classifier_name", "ort_latency", "ort_latency_interleaved",
           "protected_layers", "semi_structured_2_4", "structured_prune", "unstructured_magnitude"]
