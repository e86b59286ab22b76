"""PyTorch -> ONNX, shared by every backend that consumes ONNX (ONNX Runtime, TensorRT).

torch 2.14's default exporter is the dynamo one (needs ``onnxscript``); it writes weights to a side
``.onnx.data`` file unless ``external_data=False``, so we ask for a single self-contained file and
check it with ``onnx.checker``. The batch dimension is dynamic (throughput at batch sizes).

The dynamo exporter takes seconds per model (5-10 s for a ResNet-18), and one compress run exports the same
module several times (ONNX Runtime FP32 and INT8, the prune stage's timing, each search candidate's
runtimes), so the last few exports of this process are kept and copied when the same module (structure
and weights) is asked for again.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError, MissingDependency, first_line
from edgekit.models.loaded import state_hash
from edgekit.spec import ModelSpec

INPUT_NAME, OUTPUT_NAME = "input", "logits"


_KEEP = 4
_recent: "OrderedDict[str, tuple[Path, dict]]" = OrderedDict()
_recent_dir: tempfile.TemporaryDirectory | None = None


def _fingerprint(module: nn.Module, spec: ModelSpec, dynamic_batch: bool) -> str:
    return state_hash(module, repr(module), repr((tuple(spec.input_shape), dynamic_batch)), length=64)


def export_onnx(module: nn.Module, spec: ModelSpec, path: Path, dynamic_batch: bool = True) -> dict:
    """Write ``path``; returns {"opset": int, "exporter": str}. A module exported before in this process
    (same structure and weights) is copied from that export."""
    global _recent_dir
    key = _fingerprint(module.eval(), spec, dynamic_batch)
    if key in _recent and _recent[key][0].is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_recent[key][0], path)
        _recent.move_to_end(key)
        return dict(_recent[key][1])
    meta = _export(module, spec, path, dynamic_batch)
    if _recent_dir is None:
        _recent_dir = tempfile.TemporaryDirectory(prefix="edgekit-onnx-")
    kept = Path(_recent_dir.name) / f"{key[:24]}.onnx"
    shutil.copyfile(path, kept)
    _recent[key] = (kept, dict(meta))
    while len(_recent) > _KEEP:
        old, _ = _recent.popitem(last=False)[1]
        old.unlink(missing_ok=True)
    return meta


def _export(module: nn.Module, spec: ModelSpec, path: Path, dynamic_batch: bool) -> dict:
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
