"""ExecuTorch: PyTorch's own edge runtime. ``.pte`` programs through ``torch.export`` ->
``to_edge_transform_and_lower`` with the XNNPACK partitioner, run by ``executorch.runtime``
(``edgekit.runtime.executorch_session``) here and on a Raspberry Pi.

- FP32: the exported graph, XNNPACK-delegated where it lowers.
- INT8: PT2E with ExecuTorch's XNNPACK quantizer (per-channel symmetric int8 weights, int8 activations),
  calibrated on the same calibration set as the other backends, then lowered the same way.
- What does not lower to XNNPACK runs on ExecuTorch's portable (reference C++) kernels, often much slower:
  those ops are counted in the artifact's ``meta.portable_ops`` and said on the console (users ask,
  executorch #1340).
- Exported with a static batch of 1 (the session runs larger batches image by image), NCHW float32 I/O.
"""

from __future__ import annotations

import copy
import operator

import torch

from edgekit import ui
from edgekit.backends.base import Artifact, Backend, CompileRequest, describe_files, register_backend
from edgekit.backends.tflite import _op_error
from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.runtime.executorch_session import executorch_version
from edgekit.vocab import Precision, Runtime


@register_backend("executorch")
class ExecuTorch(Backend):
    runtime_module = "executorch.exir"
    package = "executorch"
    extra = "executorch"
    precisions = (Precision.FP32, Precision.INT8)

    def compile(self, model: LoadedModel, precision: Precision, request: CompileRequest) -> Artifact:
        self.runtime("the ExecuTorch backend")
        if precision not in self.precisions:
            raise EdgekitError(f"executorch backend cannot compile {precision}", "use precision fp32 or int8")
        c, h, w = model.spec.input_shape
        module = copy.deepcopy(model.module).eval()
        sample = (torch.zeros(1, c, h, w),)
        meta: dict = {"exporter": f"torch.export (torch {torch.__version__})", "partitioner": "XNNPACK"}
        target = request.target.name
        if precision == Precision.INT8:
            module, quant = _quantize(module, sample, request, target)
            meta.update(quant)
        try:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            with torch.no_grad():
                edge = to_edge_transform_and_lower(torch.export.export(module, sample),
                                                   partitioner=[XnnpackPartitioner()])
            portable = portable_ops(edge.exported_program().graph_module)
            program = edge.to_executorch()
        except EdgekitError:
            raise
        except Exception as err:  # noqa: BLE001 - export/lowering errors are many; name the op when we can
            raise _op_error(err, target, "ExecuTorch lowering") from None
        path = request.artifacts_dir / f"model_{precision}.pte"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(program.buffer)
        meta["portable_ops"] = portable
        if portable:
            listed = ", ".join(f"{op} x{n}" for op, n in sorted(portable.items()))
            ui.info(f"executorch-{precision}: {sum(portable.values())} op(s) not lowered to XNNPACK, left on "
                    f"ExecuTorch's portable kernels: {listed}")
        meta["executed_precision"] = precision if not portable or precision == Precision.FP32 else \
            "int8 (XNNPACK) with some ops on portable kernels"
        files, size, sha = describe_files(request.out_dir, [path])
        return Artifact(name=f"executorch-{precision}", backend=self.name, precision=precision, path=files[0],
                        files=files, runtime=Runtime.EXECUTORCH, runtime_version=executorch_version(),
                        input_shape=[c, h, w], meta=meta, bytes=size, sha256=sha)


def _quantize(module: torch.nn.Module, sample: tuple, request: CompileRequest, target: str
              ) -> tuple[torch.nn.Module, dict]:
    """PT2E INT8 with the XNNPACK quantizer, calibrated image by image (the graph is exported with batch 1)."""
    if request.calibration is None or len(request.calibration) == 0:
        raise EdgekitError("ExecuTorch INT8 needs a calibration set and none was given",
                           "compile through `edgekit compress` (it draws one from the training split)")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    try:
        prepared = move_exported_model_to_eval(prepare_pt2e(torch.export.export(module, sample).module(), quantizer))
        with torch.no_grad():
            for i in range(len(request.calibration)):
                prepared(torch.from_numpy(request.calibration[i:i + 1]))
        converted = move_exported_model_to_eval(convert_pt2e(prepared))
    except Exception as err:  # noqa: BLE001
        raise _op_error(err, target, "ExecuTorch PT2E quantization") from None
    return converted, {"quantizer": "ExecuTorch XNNPACKQuantizer (torchao prepare_pt2e/convert_pt2e)",
                       "weights": "int8 per-channel symmetric", "activations": "int8 per-tensor",
                       "calibration_images": int(len(request.calibration))}


def portable_ops(graph_module) -> dict[str, int]:
    """Operators of a lowered graph that no delegate took (they run on ExecuTorch's portable kernels),
    counted by name. Delegate calls, getitem and the memory-planning allocations are not operators."""
    counts: dict[str, int] = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or node.target is operator.getitem:
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if "call_delegate" in name or name.startswith("alloc"):
            continue
        op = str(getattr(node.target, "_name", None) or name).replace("::", ".")
        counts[op] = counts.get(op, 0) + 1
    return counts
