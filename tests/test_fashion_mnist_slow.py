"""Fashion-MNIST end to end (slow: trains for a few minutes on 2 cores).

The foundation bar: a builtin ResNet-style model fine-tuned for a few epochs reaches >= 90% top-1 on
the official test set, and its ONNX Runtime and OpenVINO FP32 artifacts match PyTorch within 0.1 pt.
"""

from __future__ import annotations

import json

import pytest

from edgekit.data.fashion_mnist import DEFAULT_DIR
from tests.conftest import ROOT, run_cli

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")]


def test_resnet_on_fashion_mnist_reaches_90_and_artifacts_agree(tmp_path):
    out = tmp_path / "fm"
    result = run_cli("compress", "-m", "builtin:resnet20", "-d", "fashion-mnist",
                     "-r", str(ROOT / "recipes" / "fashion-mnist.yaml"), "-o", str(out), "--json", timeout=3600)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads(result.stdout)
    ref = manifest["references"]["final"]["accuracy"]
    assert ref["samples"] == 10000 and ref["top1"] >= 90.0
    backends = {a["backend"] for a in manifest["artifacts"]}
    assert {"onnxruntime", "openvino"} <= backends
    for artifact in manifest["artifacts"]:
        metrics = artifact["metrics"]
        assert abs(metrics["accuracy"]["top1"] - ref["top1"]) <= 0.1
        assert metrics["agreement"]["top1_agreement"] >= 99.9
