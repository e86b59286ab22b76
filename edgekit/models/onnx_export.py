"""PyTorch -> ONNX, shared by every backend that consumes ONNX (ONNX Runtime, TensorRT).

Two exporters, tried in this order:

- torch.onnx's TorchScript (tracing) exporter: several times to an order of magnitude faster than the
  dynamo exporter on a MobileNetV3-small or a ResNet-18 (under a second against seconds). Why it
  comes first although torch deprecates it: a compress run exports each file it builds and a latency-budget
  search exports every candidate it times, so the dynamo exporter's symbolic-shape tracing was a quarter of a
  MobileNet compile (5 of 20 s) and of its search. It traces the same way ``ov.convert_model`` does for the
  OpenVINO backend, and gives the same graph here (same nodes after its Conv+BatchNorm folding, opset 20).
- the dynamo exporter (``torch.export``; torch's default since 2.9, needs ``onnxscript``): where tracing
  fails, and once a torch release drops the TorchScript one.

Either way the file is self-contained (no ``.onnx.data`` side file), passes ``onnx.checker``, and has a dynamic
batch dimension (throughput at batch sizes); the manifest's ``exporter`` says which one wrote it. Where neither
exporter can keep the batch symbolic, the file takes one image at a time (``dynamic_batch: false`` and the
reason in ``fixed_batch``; sessions then run a batch image by image).

One compress run exports the same module several times (ONNX Runtime FP32 and INT8, the prune stage's timing,
each search candidate's runtimes), so the last few exports of this process are kept and copied when the same
module (structure and weights) is asked for again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError, MissingDependency, first_line
from edgekit.models.loaded import fx_graphs, state_hash
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
    except ImportError as err:
        raise MissingDependency(err.name or "onnx", "onnx", "ONNX export") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    fixed = None
    try:
        exporter = _export_either(module, spec, path, dynamic_batch)
    except MissingDependency:
        raise
    except EdgekitError as err:
        if not dynamic_batch:
            raise
        # A graph that cannot take a symbolic batch (CondConv folds the batch into a grouped convolution's
        # groups: "convolution for kernel of unknown shape") still exports for one image at a time.
        exporter, dynamic_batch, fixed = _export_either(module, spec, path, False), False, err.problem
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"opset": int(opset), "exporter": f"{exporter} (torch {torch.__version__})",
            "input": INPUT_NAME, "output": OUTPUT_NAME, "dynamic_batch": dynamic_batch,
            **({"fixed_batch": f"batch fixed at 1: a dynamic batch failed ({fixed[:160]})"} if fixed else {})}


def _export_either(module: nn.Module, spec: ModelSpec, path: Path, dynamic_batch: bool) -> str:
    """The TorchScript exporter, else the dynamo one (which raises the one-line error); returns which wrote it.
    A dynamic batch is traced at batch 2 (a batch of 1 would let size-1 broadcasting hide a baked batch)."""
    sample = torch.zeros(2 if dynamic_batch else 1, *spec.input_shape)
    try:
        if dynamic_batch and _symbolic_sizes(module):
            raise ValueError("tracing would bake the sample's batch size into the graph")
        return _export_traced(module, sample, path, dynamic_batch)
    except Exception:  # noqa: BLE001 - any tracing failure: the dynamo exporter decides, and reports its own error
        return _export_dynamo(module, sample, path, dynamic_batch)


def fixed_batch(path: Path) -> int | None:
    """The batch an ONNX file was written for, or None where its batch dimension is symbolic."""
    import onnx

    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.HasField("dim_value") else None


def _export_traced(module: nn.Module, sample: torch.Tensor, path: Path, dynamic_batch: bool) -> str:
    """The TorchScript exporter (see the module docstring for why it is tried first)."""
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    logging_was = torch._C._jit_is_onnx_log_enabled()
    try:
        with warnings.catch_warnings(), torch.no_grad(), _native_stdout_to_devnull():
            warnings.simplefilter("ignore")   # its DeprecationWarning and the tracer's warnings
            torch.onnx.export(module, (sample,), str(path), dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=axes)
    finally:
        # torch 2.14's exporter turns its C++ log on and leaves it on (it tests a function object for truth)
        torch._C._jit_set_onnx_log_enabled(logging_was)
    return "torch.onnx TorchScript"


def _symbolic_sizes(module: nn.Module) -> bool:
    """Whether the module runs a torch.export graph (a ``GraphModule``, or the submodules of an unflattened program)
    that reads a tensor size as a symbol (``aten.sym_size``: a ``.pt2`` exported with a dynamic batch, e.g.
    ``x.view(x.size(0), -1)``). The tracer would record the
    sample's batch as a constant there - an ONNX file that fails at any other batch - so these go to the dynamo
    exporter, which keeps the symbol."""
    sym_size = torch.ops.aten.sym_size.int
    return any(n.target is sym_size for graph in fx_graphs(module) for n in graph.nodes)


@contextlib.contextmanager
def _native_stdout_to_devnull():
    """Where the TorchScript exporter fails it dumps the whole traced graph through its C++ log, on file
    descriptor 1, which ``contextlib.redirect_stdout`` cannot reach: it would break `--json` stdout, and the
    dynamo exporter then reports the error that counts."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _export_dynamo(module: nn.Module, sample: torch.Tensor, path: Path, dynamic_batch: bool) -> str:
    try:
        import onnxscript  # noqa: F401 - required by the dynamo exporter
    except ImportError as err:
        raise MissingDependency(err.name or "onnxscript", "onnx", "ONNX export") from None
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
    return "torch.onnx dynamo"


class _Named(nn.Module):
    """Gives the exported graph a stable input name ``x`` for dynamic_shapes."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)
