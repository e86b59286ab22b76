"""The ONNX export memo: a module exported again in the same process is copied from its last export, and
only when its structure and weights are unchanged (a stale graph would deploy the wrong weights)."""

from __future__ import annotations

import numpy as np
import torch

from edgekit.backends.onnxruntime import OrtSession
from edgekit.models import load_model
from edgekit.models.onnx_export import export_onnx


def _run(path, x: np.ndarray) -> np.ndarray:
    return OrtSession(path, threads=1).run(x)


def test_re_export_of_the_same_module_is_the_same_graph_and_changed_weights_are_re_exported(tmp_path):
    model = load_model("builtin:resnet8", num_classes=10)
    module, spec = model.module.eval(), model.spec
    x = np.random.default_rng(0).standard_normal((2, *spec.input_shape)).astype(np.float32)
    first, again = tmp_path / "a.onnx", tmp_path / "b.onnx"
    meta = export_onnx(module, spec, first)
    assert export_onnx(module, spec, again) == meta
    assert first.read_bytes() == again.read_bytes()
    with torch.no_grad():
        module.fc.weight.mul_(-1.0)          # in place: same object, same structure, new weights
        expected = module(torch.from_numpy(x)).numpy()
    changed = tmp_path / "c.onnx"
    export_onnx(module, spec, changed)
    np.testing.assert_allclose(_run(changed, x), expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(_run(first, x), expected, atol=1e-3)


class _Antialiased(torch.nn.Module):
    """An op the TorchScript exporter cannot write (``aten::_upsample_bilinear2d_aa``) and dynamo can."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = torch.nn.functional.interpolate(self.conv(x), scale_factor=0.5, mode="bilinear", antialias=True)
        return y.flatten(1)[:, :10]


def test_the_traced_exporter_writes_plain_models_and_dynamo_takes_what_it_cannot_with_stdout_clean(tmp_path, capfd):
    from edgekit.spec import ModelSpec

    resnet = load_model("builtin:resnet8", num_classes=10)
    meta = export_onnx(resnet.module, resnet.spec, tmp_path / "resnet.onnx")
    assert meta["exporter"].startswith("torch.onnx TorchScript") and meta["dynamic_batch"]
    x = np.random.default_rng(1).standard_normal((3, *resnet.spec.input_shape)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(_run(tmp_path / "resnet.onnx", x), resnet.module(torch.from_numpy(x)).numpy(),
                                   rtol=1e-4, atol=1e-4)   # batch 3 through a graph traced at batch 2

    module, spec = _Antialiased().eval(), ModelSpec(input_shape=(3, 16, 16), num_classes=10)
    meta = export_onnx(module, spec, tmp_path / "aa.onnx")
    assert meta["exporter"].startswith("torch.onnx dynamo")
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(_run(tmp_path / "aa.onnx", x), module(torch.from_numpy(x)).numpy(),
                                   rtol=1e-4, atol=1e-4)
    out, _ = capfd.readouterr()
    assert "graph" not in out   # the failed trace's graph dump (C++ log on fd 1) would break --json
    assert not torch._C._jit_is_onnx_log_enabled()
