"""PyTorch -> ONNX, shared by every backend that consumes ONNX (ONNX Runtime, TensorRT).

torch 2.14's default exporter is the dynamo one (needs ``onnxscript``); it writes weights to a side
``.onnx.data`` file unless ``external_data=False``, so we ask for a single self-contained file and
check it with ``onnx.checker``. The batch dimension is dynamic (throughput at batch sizes).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError, MissingDependency, first_line
from edgekit.spec import ModelSpec

INPUT_NAME, OUTPUT_NAME = "input", "logits"


def export_onnx(module: nn.Module, spec: ModelSpec, path: Path, dynamic_batch: bool = True) -> dict:
    """Write ``path``; returns {"opset": int, "exporter": str}."""
    try:
        import onnx
        import onnxscript  # noqa: F401 - required by the dynamo exporter
    except ImportError as err:
        raise MissingDependency(err.name or "onnx", "onnx", "ONNX export") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    sample = torch.zeros(2, *spec.input_shape)
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(_Named(module), (sample,), dynamo=True, external_data=False,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=dynamic, verbose=False)
        except Exception as err:  # noqa: BLE001 - exporter errors are many; report the first line
            raise EdgekitError(f"ONNX export failed: {first_line(err, 300, typed=True)[:300]}") from None
        program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"opset": int(opset), "exporter": f"torch.onnx dynamo (torch {torch.__version__})",
            "input": INPUT_NAME, "output": OUTPUT_NAME, "dynamic_batch": dynamic_batch}


class _Named(nn.Module):
    """Gives the exported graph a stable input name ``x`` for dynamic_shapes."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)
