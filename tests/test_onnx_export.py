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
