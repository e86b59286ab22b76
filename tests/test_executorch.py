"""ExecuTorch backend: ``edgekit compress -t rpi5`` builds FP32 and INT8 ``.pte`` files (XNNPACK), scored through
``executorch.runtime`` as the device runner runs them. Skips where ExecuTorch is not installed
(``pip install 'edgekit[executorch]'``)."""

from __future__ import annotations

import json

import pytest

from bundle_fixture import build_bundle
from conftest import run_cli

pytest.importorskip("executorch.exir", reason="ExecuTorch not installed (pip install 'edgekit[executorch]')")

RECIPE = """name: executorch-test
stages:
  - evaluate: {split: test}
compile:
  precisions: [fp32, int8]
  backends: [executorch]
  max_accuracy_drop: 1.0
profile: {warmup: 3, runs: 20, max_seconds: 1}
"""


def test_rpi5_builds_executorch_fp32_and_int8(tmp_path):
    bundle = build_bundle(tmp_path, "-t", "rpi5", recipe_text=RECIPE)
    manifest = json.loads((bundle / "manifest.json").read_text())
    et = {a["precision"]: a for a in manifest["artifacts"] if a["runtime"] == "executorch"}
    assert set(et) == {"fp32", "int8"}
    assert all(a["path"].endswith(".pte") and isinstance(a["meta"]["portable_ops"], dict) for a in et.values())
    assert et["fp32"]["metrics"]["agreement"]["top1_agreement"] >= 99.9          # vs PyTorch, per image
    assert et["int8"]["metrics"]["drops"]["vs_final"] <= 1.0                       # the recipe's bound
    assert et["int8"]["meta"]["calibration_images"] > 0
    # estimated with ExecuTorch's own Pi figures (Arm's published numbers), not LiteRT's
    assert all(a["metrics"]["estimate"]["backend"] == "executorch" for a in et.values())
    # the report says, per ExecuTorch artifact, what did not lower to XNNPACK (or that everything did)
    report = (bundle / "report.md").read_text()
    assert "Not lowered to XNNPACK" in report and all(f"- {a['name']}: " in report for a in et.values())
    # the shipped runner (what `edgekit bench --host` runs on a Pi) scores the same files the same way
    r = run_cli("bench", str(bundle), "--json", "--no-update", "--runs", "5", "--max-seconds", "1",
                "--artifact", "executorch-fp32", "--artifact", "executorch-int8")
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(r.stdout)["results"]
    for precision, art in et.items():
        assert results[art["name"]]["accuracy"]["top1"] == pytest.approx(art["metrics"]["accuracy"]["top1"])
        assert results[art["name"]]["session"]["runtime_version"] == art["runtime_version"]


def test_ops_left_on_portable_kernels_are_counted_by_name():
    """What XNNPACK does not take (here a cumulative sum) is counted per operator; what it takes (the linear
    layer) and the delegate's plumbing are not."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgekit.backends.executorch import portable_ops

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x):
            return torch.cumsum(self.fc(x), dim=1)

    edge = to_edge_transform_and_lower(torch.export.export(Model().eval(), (torch.zeros(1, 8),)),
                                       partitioner=[XnnpackPartitioner()])
    assert portable_ops(edge.exported_program().graph_module) == {"aten.cumsum": 1}
