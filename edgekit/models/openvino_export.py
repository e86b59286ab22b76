"""PyTorch -> OpenVINO model (in memory), shared by the openvino backend (which saves and quantizes it) and
the distill stage (which runs its frozen teacher through it).

``ov.convert_model`` traces the module with TorchScript; where tracing fails (torchvision's ViT: "Couldn't get
TorchScript module by tracing") the model goes through the ONNX file of the shared exporter instead. The batch
dimension is dynamic unless the ONNX file could only be written for one image (the openvino backend fixes it at one
image, too, where the CPU plugin cannot compile a dynamic batch).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.models.onnx_export import export_onnx
from edgekit.spec import ModelSpec


def to_openvino(ov, module: nn.Module, spec: ModelSpec, source: str, work_dir: Path | None = None
                ) -> tuple[object, str]:
    """(``ov.Model``, how it was converted). ``ov`` is the imported openvino module (the caller's, so a
    missing runtime is reported where it is needed); ``work_dir`` holds the ONNX route's temporary file."""
    c, h, w = spec.input_shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convert_model traces with torch.jit, which warns
            ov_model = ov.convert_model(module.eval(), example_input=torch.zeros(1, c, h, w), input=[(-1, c, h, w)])
        return ov_model, "ov.convert_model (PyTorch, traced)"
    except Exception as err:  # noqa: BLE001 - try the ONNX route before giving up
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    with tempfile.TemporaryDirectory(dir=work_dir if work_dir is not None and Path(work_dir).exists() else None) as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            dynamic = export_onnx(module, spec, path)["dynamic_batch"]
            ov_model = ov.convert_model(str(path))
            if dynamic:
                ov_model.reshape({ov_model.inputs[0]: ov.PartialShape([-1, c, h, w])})
            return ov_model, f"via ONNX (PyTorch tracing failed: {first[:120]})"
        except Exception as err:  # noqa: BLE001
            raise EdgekitError(f"OpenVINO conversion failed for {source}: PyTorch tracing ({first}) and the "
                               f"ONNX route ({str(err).strip().splitlines()[0][:160]})",
                               "use the onnxruntime backend for this model") from None

