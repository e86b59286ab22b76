"""Roofline latency estimates: per-layer costs, labels, and where they appear (compress, bench)."""

from __future__ import annotations

import json
import shutil

import pytest

from bundle_fixture import RECIPE
from conftest import run_cli
from edgekit.errors import EdgekitError
from edgekit.models import load_model
from edgekit.models.complexity import count_macs
from edgekit.profiling.estimate import estimate, layer_costs
from edgekit.targets import load_target


def test_layer_costs_cover_the_model():
    model = load_model("builtin:mobilenetv3s_32")
    costs = layer_costs(model.module, model.spec)
    total = count_macs(model.module, model.spec)
    assert sum(c.macs for c in costs) == pytest.approx(total, rel=0.02)
    assert {"dense", "depthwise", "linear"} <= {c.kind for c in costs}
    assert all(c.activations > 0 for c in costs)


def test_estimates_scale_with_device_and_precision():
    model = load_model("builtin:resnet18_32")
    costs = layer_costs(model.module, model.spec)
    rpi4, rpi5 = load_target("rpi4"), load_target("rpi5")
    e4, e5 = estimate(costs, rpi4, "fp32"), estimate(costs, rpi5, "fp32")
    assert e4["kind"] == "estimated" and e4["target"] == "rpi4" and "roofline" in e4["model"]
    assert e4["latency_ms"] > e5["latency_ms"] > 0                 # Pi 4 is slower than Pi 5
    assert estimate(costs, rpi5, "int8")["latency_ms"] < e5["latency_ms"]
    with pytest.raises(EdgekitError, match="no peak_gops"):
        estimate(costs, load_target("jetson-nano"), "int8")


def test_compress_for_a_remote_target_labels_estimates(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "rpi5"
    r = run_cli("compress", "--recipe", str(recipe), "--target", "rpi5", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    onnx = next(a for a in manifest["artifacts"] if a["name"] == "onnxruntime-fp32")
    est = onnx["metrics"]["estimate"]
    assert est["kind"] == "estimated" and est["target"] == "rpi5" and est["latency_ms"] > 0
    assert onnx["metrics"]["latency"]["measured"] == "host"         # the host measurement stays separate
    report = (out / "report.md").read_text()
    assert "Estimated latency (not measured)" in report and "(estimated, rpi5)" in report


def test_bench_estimates_artifacts_that_cannot_run_here(small_bundle, tmp_path):
    """A TensorRT artifact (runnable_here: false, as the TensorRT backend writes them; we have no GPU):
    bench measures the others and estimates this one, in a separate, labelled table."""
    bundle = tmp_path / "bundle"
    shutil.copytree(small_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    onnx = next(a for a in manifest["artifacts"] if a["name"] == "onnxruntime-fp32")
    manifest["artifacts"].append({**onnx, "name": "tensorrt-fp32", "backend": "tensorrt", "runtime": "tensorrt",
                                  "runnable_here": False, "metrics": {}})
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    r = run_cli("bench", str(bundle), "--runs", "10", "--max-seconds", "1", "--batch-sizes", "1", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    entry = json.loads(r.stdout)
    assert "tensorrt-fp32" not in entry["results"]
    est = entry["estimates"]["tensorrt-fp32"]
    assert est["kind"] == "estimated" and est["target"] == manifest["target"]["name"] and est["latency_ms"] > 0
    report = (bundle / "report.md").read_text()
    section = report[report.index("Estimated latency (not measured)"):]
    assert "tensorrt-fp32" in section and "(estimated)" in section
